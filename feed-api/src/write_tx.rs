//! A write and the events it causes, committed together (the transactional
//! outbox): every event is inserted into the outbox in the write's own
//! transaction, and handed to the [`Publisher`] only once that commits.

use chrono::Utc;
use feed_core::events::{Envelope, Event};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::extract::RequestId;
use crate::publish::Publisher;

/// A transaction that records events in the outbox as it goes, and
/// publishes them after it commits. Dropped without [`WriteTx::commit`], it
/// rolls back and publishes nothing.
pub struct WriteTx<'p> {
    tx: Transaction<'static, Postgres>,
    /// What [`WriteTx::commit`] hands to the publisher.
    events: Vec<Envelope>,
    publisher: &'p Publisher,
    /// Who causes the events.
    actor: Uuid,
    /// The request they come from: the events' `correlation_id`.
    correlation_id: Option<String>,
}

impl<'p> WriteTx<'p> {
    /// Begins a write by `actor` in the request `request_id`.
    pub async fn begin(
        db: &PgPool,
        publisher: &'p Publisher,
        actor: Uuid,
        request_id: &RequestId,
    ) -> sqlx::Result<WriteTx<'p>> {
        Ok(WriteTx {
            tx: db.begin().await?,
            events: Vec::new(),
            publisher,
            actor,
            correlation_id: request_id.0.clone(),
        })
    }

    /// The transaction's connection, for the write's own statements.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Writes an event to the outbox in this transaction.
    pub async fn record(&mut self, event: Event) -> sqlx::Result<()> {
        let envelope = Envelope::new(&event, self.actor, Utc::now(), self.correlation_id.clone());
        feed_core::db::outbox::insert(&mut *self.tx, &envelope).await?;
        self.events.push(envelope);
        Ok(())
    }

    /// Commits the write with its outbox events, then hands the events to
    /// the publisher (they are safe in the outbox whatever happens next).
    pub async fn commit(self) -> sqlx::Result<()> {
        self.tx.commit().await?;
        if !self.events.is_empty() {
            self.publisher.publish(self.events);
        }
        Ok(())
    }
}
