//! The per-entity state of an append-only view's stateful function calls.
//!
//! Each call (by its slot in the view's plan) keeps one state per entity, its first argument.
//! A state lives in the view's `group_state` table under `view \0 slot entity` (the slot as an
//! eight-byte window start, so the layout is the per-group one), is read from there the first
//! time an epoch's rows need it, and is written back at the epoch's commit with the view's
//! rows and the source offsets. Memory holds the entities the current epoch touched and, between
//! epochs, up to [`RESIDENT_LIMIT`] others; beyond that the clean ones are dropped and read
//! again when next needed.

use std::collections::HashMap;

use datafusion::arrow::array::{new_empty_array, Array, ArrayRef, AsArray};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use weir_udfs::stateful::EntityState;

use crate::plan::StatefulCall;
use crate::state::{Store, Table, ViewKeys, WriteSet};

/// Entities kept in memory between epochs, over all of a view's calls.
pub const RESIDENT_LIMIT: usize = 100_000;

struct Resident {
    state: EntityState,
    dirty: bool,
}

/// One call's resident entities, looked up by the entity's text as it is in the batch (no
/// allocation per row) with a fast hash (SipHash and a `String` per lookup were most of the
/// cost a scored view adds per event).
type Entities = HashMap<Box<str>, Resident, ahash::RandomState>;

/// The entities' states of one view.
pub struct EntityStates {
    keys: ViewKeys,
    /// By the call's slot.
    resident: Vec<Entities>,
}

impl EntityStates {
    pub fn new(keys: ViewKeys) -> Self {
        Self {
            keys,
            resident: Vec::new(),
        }
    }

    /// The resident entities of the call in `slot`.
    fn of_slot(&mut self, slot: usize) -> &mut Entities {
        if self.resident.len() <= slot {
            self.resident.resize_with(slot + 1, Entities::default);
        }
        &mut self.resident[slot]
    }

    fn key(&self, slot: usize, entity: &str) -> Vec<u8> {
        self.keys.group(slot as i64, entity.as_bytes())
    }

    /// The call's arguments over `batch`.
    pub fn arguments(call: &StatefulCall, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        call.args
            .iter()
            .map(|a| a.evaluate(batch)?.into_array(batch.num_rows()))
            .collect()
    }

    /// Evaluates `call` on each row of `args`, in row order, learning as it goes.
    pub fn evaluate(
        &mut self,
        call: &StatefulCall,
        args: &[ArrayRef],
        rows: usize,
        store: &Store,
    ) -> Result<ArrayRef> {
        if rows == 0 {
            return Ok(new_empty_array(&call.kind.return_type()));
        }
        let entities = args[0].as_string::<i32>();
        self.load(call, entities, store)?;
        let null = ScalarValue::try_from(call.kind.return_type())?;
        let mut out = Vec::with_capacity(rows);
        let resident = self.of_slot(call.slot);
        for row in 0..rows {
            if entities.is_null(row) {
                out.push(null.clone());
                continue;
            }
            let entry = resident.get_mut(entities.value(row)).expect("loaded above");
            entry.dirty = true;
            out.push(call.kind.observe(&mut entry.state, args, row));
        }
        ScalarValue::iter_to_array(out)
    }

    /// Makes every entity of `entities` resident: read from the store, or new.
    fn load(
        &mut self,
        call: &StatefulCall,
        entities: &datafusion::arrow::array::StringArray,
        store: &Store,
    ) -> Result<()> {
        let resident = self.of_slot(call.slot);
        let mut missing: Vec<&str> = entities
            .iter()
            .flatten()
            .filter(|e| !resident.contains_key(*e))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let keys: Vec<Vec<u8>> = missing.iter().map(|e| self.key(call.slot, e)).collect();
        let stored = store
            .multi_get(Table::GroupState, &keys)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let resident = self.of_slot(call.slot);
        for (entity, value) in missing.into_iter().zip(stored) {
            let state = match value {
                Some(bytes) => call.kind.decode_state(&bytes).ok_or_else(|| {
                    DataFusionError::Internal(format!(
                        "the stored state of {} for entity {entity:?} does not decode",
                        call.kind.name()
                    ))
                })?,
                None => call.kind.new_state(),
            };
            resident.insert(
                entity.into(),
                Resident {
                    state,
                    dirty: false,
                },
            );
        }
        Ok(())
    }

    /// Adds the states the epoch changed to `ws`, and bounds what stays in memory.
    ///
    /// Past [`RESIDENT_LIMIT`] only the entities this epoch changed stay: `ws` is written while
    /// the next epoch runs, so an entity it holds must not be read from the store until the
    /// write after it (the store would still have its state from before this epoch). An entity
    /// dropped here was last written by an earlier epoch, whose write is done.
    pub fn write(&mut self, ws: &mut WriteSet) {
        if self.resident.iter().map(HashMap::len).sum::<usize>() > RESIDENT_LIMIT {
            for entities in &mut self.resident {
                entities.retain(|_, r| r.dirty);
            }
        }
        let mut changed = Vec::new();
        for (slot, entities) in self.resident.iter_mut().enumerate() {
            for (entity, resident) in entities.iter_mut().filter(|(_, r)| r.dirty) {
                changed.push((
                    self.keys.group(slot as i64, entity.as_bytes()),
                    resident.state.encode(),
                ));
                resident.dirty = false;
            }
        }
        // In key order: RocksDB inserts sorted keys several times faster than the map's order.
        changed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, value) in changed {
            ws.put(Table::GroupState, key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use std::sync::Arc;
    use weir_udfs::stateful::StatefulKind;

    /// An epoch's write runs while the next epoch computes: with more entities than are kept,
    /// those the epoch just learnt about must stay in memory, or the next epoch reads their
    /// state from before (the write not done yet) and learns everything again.
    #[test]
    fn entities_the_epoch_in_flight_writes_are_not_read_back_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut states = EntityStates::new(ViewKeys::new("v"));
        let call = StatefulCall {
            kind: StatefulKind::IsNovel,
            slot: 0,
            args: Vec::new(),
        };
        let n = RESIDENT_LIMIT + 10;
        let entities: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..n).map(|i| format!("e{i}")),
        ));
        let values: ArrayRef = Arc::new(StringArray::from_iter_values((0..n).map(|_| "x")));
        let args = [entities, values];
        let first = states.evaluate(&call, &args, n, &store).unwrap();
        assert!(first.as_boolean().iter().all(|v| v == Some(true)));
        let mut ws = WriteSet::default();
        states.write(&mut ws);
        assert!(!ws.is_empty());
        // The write set is not in the store yet (in flight): the next epoch still knows
        // every value it saw.
        let again = states.evaluate(&call, &args, n, &store).unwrap();
        assert_eq!(again.as_boolean().true_count(), 0, "learnt twice");
        // Once both epochs are written, an epoch that changes nothing lets them go, and they
        // are read back from the store.
        store.write(&ws).unwrap();
        let mut ws = WriteSet::default();
        states.write(&mut ws);
        store.write(&ws).unwrap();
        states.write(&mut WriteSet::default());
        assert_eq!(states.resident[0].len(), 0);
        let read_back = states.evaluate(&call, &args, n, &store).unwrap();
        assert_eq!(read_back.as_boolean().true_count(), 0);
    }
}
