//! What a member sees of a message after it was accepted: its status as its sender sees it,
//! and a query's reply as its requester is allowed to see it.

use serde_json::{Map, Value};

use crate::identity::MemberId;
use crate::registry::TypeDef;
use crate::store::DeliveryState;

/// The one word a sender sees for a message, from its recipients' states: dead-lettered if
/// any recipient dead-lettered it (the sender must act), acked once every recipient acked it,
/// delivered once any recipient holds or acked it, accepted before that.
pub fn overall(states: &[DeliveryState]) -> &'static str {
    if states.contains(&DeliveryState::DeadLettered) {
        "dead_lettered"
    } else if !states.is_empty() && states.iter().all(|s| *s == DeliveryState::Acked) {
        "acked"
    } else if states.contains(&DeliveryState::Delivered) || states.contains(&DeliveryState::Acked) {
        "delivered"
    } else {
        "accepted"
    }
}

/// Removes the fields the requester has not been granted. A type without a `grants` table
/// shows its whole response to every member allowed to ask; with one, only what is listed.
pub fn granted(def: &TypeDef, requester: &MemberId, data: Value) -> Value {
    if def.grants.is_empty() {
        return data;
    }
    let allowed = def.grants.get(requester);
    match data {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| allowed.is_some_and(|a| a.contains(k)))
                .collect::<Map<_, _>>(),
        ),
        _ => Value::Object(Map::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryState::*;

    #[test]
    fn the_overall_status_follows_the_recipients() {
        assert_eq!(overall(&[]), "accepted");
        assert_eq!(overall(&[Pending, Pending]), "accepted");
        assert_eq!(overall(&[Pending, Delivered]), "delivered");
        assert_eq!(overall(&[Acked, Pending]), "delivered");
        assert_eq!(overall(&[Acked, Acked]), "acked");
        assert_eq!(overall(&[Acked, DeadLettered]), "dead_lettered");
    }
}
