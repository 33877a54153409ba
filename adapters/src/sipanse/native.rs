//! SIPANSE's native interface and its own vocabulary: row shape, status codes, status log.

use crate::agency::AdapterError;

#[derive(Debug, thiserror::Error)]
pub enum SipanseNativeError {
    #[error("SIPANSE database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("no such application in SIPANSE")]
    NotFound,
    #[error("the application is {0:?}; this action is not allowed any more")]
    WrongState(NativeStatus),
    #[error("unknown SIPANSE status code {0:?}")]
    UnknownStatus(String),
    /// SIPANSE's API could not be reached or refused the call.
    #[error("SIPANSE API: {0}")]
    Api(String),
}

impl From<SipanseNativeError> for AdapterError {
    fn from(e: SipanseNativeError) -> Self {
        AdapterError::Native(e.to_string())
    }
}

/// SIPANSE's status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeStatus {
    Baru,
    Verifikasi,
    Tolak,
    Setuju,
    Terbit,
    Ditarik,
}

impl NativeStatus {
    pub fn code(self) -> &'static str {
        match self {
            NativeStatus::Baru => "BARU",
            NativeStatus::Verifikasi => "VERIFIKASI",
            NativeStatus::Tolak => "TOLAK",
            NativeStatus::Setuju => "SETUJU",
            NativeStatus::Terbit => "TERBIT",
            NativeStatus::Ditarik => "DITARIK",
        }
    }

    pub fn from_code(s: &str) -> Result<NativeStatus, SipanseNativeError> {
        Ok(match s {
            "BARU" => NativeStatus::Baru,
            "VERIFIKASI" => NativeStatus::Verifikasi,
            "TOLAK" => NativeStatus::Tolak,
            "SETUJU" => NativeStatus::Setuju,
            "TERBIT" => NativeStatus::Terbit,
            "DITARIK" => NativeStatus::Ditarik,
            other => return Err(SipanseNativeError::UnknownStatus(other.to_owned())),
        })
    }

    /// The canonical status (`sipanse.izin.status` and the withdrawal answers).
    pub fn canonical(self) -> &'static str {
        match self {
            NativeStatus::Baru => "diterima",
            NativeStatus::Verifikasi => "diverifikasi",
            NativeStatus::Tolak => "ditolak",
            NativeStatus::Setuju => "disetujui",
            NativeStatus::Terbit => "terbit",
            NativeStatus::Ditarik => "ditarik",
        }
    }
}

/// An application in SIPANSE's own row shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NativePermohonan {
    pub no_registrasi: String,
    /// `<applicant member>|<bus message id>`: how SIPANSE remembers who to answer.
    pub referensi: String,
    pub nib: String,
    pub npwp: String,
    pub nik_pemohon: String,
    pub nama_pemohon: String,
    pub jenis_izin: String,
    /// KBLI codes, comma-separated, as SIPANSE stores them.
    pub kbli: String,
    pub kode_lokasi: String,
    /// Attachments as a JSON array text.
    pub lampiran: String,
    pub status: String,
    pub no_izin: Option<String>,
}

/// One entry of SIPANSE's status log.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StatusChange {
    pub seq: i64,
    pub no_registrasi: String,
    pub status: String,
    pub catatan: String,
    pub referensi: String,
    pub no_izin: Option<String>,
}

/// SIPANSE's native interface. In production it is [`super::api::SipanseApi`], the client of
/// SIPANSE's HTTP API; the simulator implements it in-process for fast tests and the demo, and
/// serves the same API as its own process (`simpul simulate sipanse`).
#[async_trait::async_trait]
pub trait SipanseSystem: Send + Sync {
    /// Registers an application; idempotent per `referensi`. Returns the registration number.
    async fn daftar(&self, p: &NativePermohonan) -> Result<String, SipanseNativeError>;
    async fn cari(&self, no: &str) -> Result<Option<NativePermohonan>, SipanseNativeError>;
    async fn cari_referensi(
        &self,
        referensi: &str,
    ) -> Result<Option<NativePermohonan>, SipanseNativeError>;
    /// Records the applicant check: VERIFIKASI when it passed, TOLAK with reasons otherwise.
    async fn catat_verifikasi(
        &self,
        no: &str,
        lolos: bool,
        catatan: &str,
    ) -> Result<(), SipanseNativeError>;
    /// Withdraws an undecided application (`WrongState` once decided).
    async fn tarik(&self, no: &str, alasan: &str) -> Result<(), SipanseNativeError>;
    /// Corrects an undecided application (`WrongState` once decided).
    async fn ubah(&self, no: &str, p: &NativePermohonan) -> Result<(), SipanseNativeError>;
    async fn log_status(
        &self,
        after: i64,
        max: usize,
    ) -> Result<Vec<StatusChange>, SipanseNativeError>;
}
