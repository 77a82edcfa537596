//! Opaque pagination cursors.
//!
//! A cursor is the sort key of the last item a page returned: a timestamp
//! (microseconds) and an id to break ties. Clients pass it back verbatim; it
//! is base64url so it survives a query string, and it is validated on the
//! way in so a tampered cursor is a 400, never a 500.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

/// 9999-12-31T23:59:59.999999Z in microseconds.
const MAX_MICROS: i64 = 253_402_300_799_999_999;

/// The position after which the next page starts; ordered as feeds are,
/// by time, then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// Microseconds since the Unix epoch of the last item returned.
    pub at_micros: i64,
    /// Id of the last item returned.
    pub id: Uuid,
}

/// The cursor a client sent is not one this server issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cursor is not valid: pass back the next_cursor of a previous page unchanged")]
pub struct BadCursor;

impl Cursor {
    /// Encodes the cursor for a response.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}.{}", self.at_micros, self.id.simple()))
    }

    /// Decodes a cursor from a request.
    pub fn decode(raw: &str) -> Result<Cursor, BadCursor> {
        // 20 digits, a dot and 32 hex digits, base64-encoded, fit in 72.
        if raw.len() > 72 {
            return Err(BadCursor);
        }
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| BadCursor)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| BadCursor)?;
        let (at, id) = text.split_once('.').ok_or(BadCursor)?;
        let at_micros: i64 = at.parse().map_err(|_| BadCursor)?;
        // Every time this server hands out lies in 1970..=9999, which
        // PostgreSQL and chrono both represent.
        if !(0..=MAX_MICROS).contains(&at_micros) {
            return Err(BadCursor);
        }
        Ok(Cursor {
            at_micros,
            id: Uuid::try_parse(id).map_err(|_| BadCursor)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips() {
        let cursor = Cursor {
            at_micros: 1_700_000_000_123_456,
            id: Uuid::now_v7(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
    }

    #[test]
    fn times_out_of_range_are_rejected() {
        for at_micros in [-1, i64::MIN, MAX_MICROS + 1] {
            let raw = URL_SAFE_NO_PAD.encode(format!("{at_micros}.{}", Uuid::nil().simple()));
            assert_eq!(Cursor::decode(&raw), Err(BadCursor), "{at_micros}");
        }
    }

    proptest! {
        #[test]
        fn junk_is_rejected_without_panicking(raw in ".{0,100}") {
            let _ = Cursor::decode(&raw);
        }
    }
}
