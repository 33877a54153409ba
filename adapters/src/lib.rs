//! Agency adapters: one module per agency system. They arrive with the adapters issue.
