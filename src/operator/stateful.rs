//! The per-entity state of an append-only view's stateful function calls.
//!
//! Each call (by its slot in the view's plan) keeps one state per entity, its first argument.
//! A state lives in the view's `group_state` table under `view \0 slot entity` (the slot as an
//! eight-byte window start, so the layout is the per-group one), is read from there the first
//! time an epoch's rows need it, and is written back at the epoch's commit with the view's
//! rows and the source offsets. Memory holds the entities the current epoch touched and, between
//! epochs, up to [`RESIDENT_LIMIT`] others; beyond that the clean ones are dropped and read
//! again when next needed.

use datafusion::arrow::array::{
    new_empty_array, Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, StringArray,
};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use hashbrown::HashTable;
use weir_udfs::stateful::EntityState;

use super::prefetch::prefetch;
use crate::plan::StatefulCall;
use crate::state::{Store, Table, ViewKeys, WriteSet};

/// Entities kept in memory between epochs, over all of a view's calls.
pub const RESIDENT_LIMIT: usize = 100_000;

/// A row whose entity is NULL, in the places [`Entities::place_rows`] returns.
const NO_ENTITY: u32 = u32::MAX;

struct Resident {
    entity: Box<str>,
    /// Of `entity`, by the call's hasher (kept for the table's rehashing).
    hash: u64,
    state: EntityState,
    dirty: bool,
}

/// One call's resident entities: a list, and a table of their places in it by the entity's
/// text. A batch's rows are looked up once each with the batch's `&str` (no allocation per
/// row), and the call then reaches each row's entity by its place.
#[derive(Default)]
struct Entities {
    list: Vec<Resident>,
    places: HashTable<u32>,
    hasher: ahash::RandomState,
}

impl Entities {
    fn len(&self) -> usize {
        self.list.len()
    }

    fn find(&self, hash: u64, entity: &str) -> Option<u32> {
        self.places
            .find(hash, |i| &*self.list[*i as usize].entity == entity)
            .copied()
    }

    fn insert(&mut self, hash: u64, entity: &str, state: EntityState) -> u32 {
        let place = u32::try_from(self.list.len()).expect("fewer than 4G entities in memory");
        self.list.push(Resident {
            entity: entity.into(),
            hash,
            state,
            dirty: false,
        });
        let list = &self.list;
        self.places
            .insert_unique(hash, place, |i| list[*i as usize].hash);
        place
    }

    /// Each row's place (NULL entities: [`NO_ENTITY`]), and the places of entities that were
    /// not resident, now added with `new` states.
    fn place_rows(
        &mut self,
        entities: &StringArray,
        new: impl Fn() -> EntityState,
    ) -> (Vec<u32>, Vec<u32>) {
        let mut places = Vec::with_capacity(entities.len());
        let mut added = Vec::new();
        for entity in entities.iter() {
            let Some(entity) = entity else {
                places.push(NO_ENTITY);
                continue;
            };
            let hash = self.hasher.hash_one(entity);
            let place = match self.find(hash, entity) {
                Some(place) => place,
                None => {
                    let place = self.insert(hash, entity, new());
                    added.push(place);
                    place
                }
            };
            places.push(place);
        }
        (places, added)
    }

    /// Keeps only the entities for which `keep` holds.
    fn retain(&mut self, keep: impl FnMut(&Resident) -> bool) {
        self.list.retain(keep);
        self.rebuild_places();
    }

    /// Keeps only the first `len` entities (those resident before a batch added the others).
    fn truncate(&mut self, len: usize) {
        self.list.truncate(len);
        self.rebuild_places();
    }

    fn rebuild_places(&mut self) {
        self.places.clear();
        let list = &self.list;
        for (place, resident) in list.iter().enumerate() {
            self.places
                .insert_unique(resident.hash, place as u32, |i| list[*i as usize].hash);
        }
    }
}

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
        let places = self.load(call, args[0].as_string::<i32>(), store)?;
        let list = &mut self.resident[call.slot].list;
        let mut out = Output::new(call.kind.return_type(), rows);
        for (row, &place) in places.iter().enumerate() {
            if let Some(ahead) = places.get(row + PREFETCH_DISTANCE) {
                if let Some(resident) = list.get(*ahead as usize) {
                    prefetch(resident);
                }
            }
            if place == NO_ENTITY {
                out.push(ScalarValue::Null)?;
                continue;
            }
            let entry = &mut list[place as usize];
            entry.dirty = true;
            out.push(call.kind.observe(&mut entry.state, args, row))?;
        }
        Ok(out.finish())
    }

    /// Makes every entity of `entities` resident (read from the store, or new) and returns
    /// each row's place in the call's list.
    fn load(
        &mut self,
        call: &StatefulCall,
        entities: &StringArray,
        store: &Store,
    ) -> Result<Vec<u32>> {
        let prefix = self.keys.window(call.slot as i64);
        if self.resident.len() <= call.slot {
            self.resident.resize_with(call.slot + 1, Entities::default);
        }
        let resident = &mut self.resident[call.slot];
        let before = resident.len();
        let (places, added) = resident.place_rows(entities, || call.kind.new_state());
        if added.is_empty() {
            return Ok(places);
        }
        let keys: Vec<Vec<u8>> = added
            .iter()
            .map(|p| {
                [
                    prefix.as_slice(),
                    resident.list[*p as usize].entity.as_bytes(),
                ]
                .concat()
            })
            .collect();
        let mut undecodable = None;
        let read = store.multi_get_each(Table::GroupState, &keys, |i, value| {
            let Some(bytes) = value else { return };
            let entry = &mut resident.list[added[i] as usize];
            match call.kind.decode_state(bytes) {
                Some(state) => entry.state = state,
                None => undecodable = Some(entry.entity.clone()),
            }
        });
        let error = match (read, undecodable) {
            (Err(e), _) => DataFusionError::External(Box::new(e)),
            (Ok(()), Some(entity)) => DataFusionError::Internal(format!(
                "the stored state of {} for entity {entity:?} does not decode",
                call.kind.name()
            )),
            (Ok(()), None) => return Ok(places),
        };
        // The entities just added hold no state read from the store: forget them.
        resident.truncate(before);
        Err(error)
    }

    /// Adds the states the epoch changed to `ws`, and bounds what stays in memory.
    ///
    /// Past [`RESIDENT_LIMIT`] only the entities this epoch changed stay: `ws` is written while
    /// the next epoch runs, so an entity it holds must not be read from the store until the
    /// write after it (the store would still have its state from before this epoch). An entity
    /// dropped here was last written by an earlier epoch, whose write is done.
    pub fn write(&mut self, ws: &mut WriteSet) {
        if self.resident.iter().map(Entities::len).sum::<usize>() > RESIDENT_LIMIT {
            for entities in &mut self.resident {
                entities.retain(|r| r.dirty);
            }
        }
        let mut value = Vec::new();
        for (slot, entities) in self.resident.iter_mut().enumerate() {
            let prefix = self.keys.window(slot as i64);
            let list = &mut entities.list;
            let mut changed: Vec<u32> = (0..list.len() as u32)
                .filter(|p| list[*p as usize].dirty)
                .collect();
            // In key order (the prefix is the slot's): RocksDB inserts sorted keys several
            // times faster than the list's order.
            changed
                .sort_unstable_by(|a, b| list[*a as usize].entity.cmp(&list[*b as usize].entity));
            ws.reserve(changed.len());
            for place in changed {
                let resident = &mut list[place as usize];
                value.clear();
                resident.state.encode_into(&mut value);
                ws.put_parts(
                    Table::GroupState,
                    &[&prefix, resident.entity.as_bytes()],
                    &[&value],
                );
                resident.dirty = false;
            }
        }
    }
}

/// How many rows ahead [`EntityStates::evaluate`] asks for an entity's state to be brought
/// into the CPU's cache.
const PREFETCH_DISTANCE: usize = 8;

/// A call's results, built as they come.
enum Output {
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
}

impl Output {
    fn new(data_type: DataType, rows: usize) -> Self {
        match data_type {
            DataType::Boolean => Output::Boolean(BooleanBuilder::with_capacity(rows)),
            _ => Output::Float64(Float64Builder::with_capacity(rows)),
        }
    }

    fn push(&mut self, value: ScalarValue) -> Result<()> {
        match (self, value) {
            (Output::Float64(b), ScalarValue::Float64(v)) => b.append_option(v),
            (Output::Boolean(b), ScalarValue::Boolean(v)) => b.append_option(v),
            (Output::Float64(b), ScalarValue::Null) => b.append_null(),
            (Output::Boolean(b), ScalarValue::Null) => b.append_null(),
            (_, other) => {
                return Err(DataFusionError::Internal(format!(
                    "a stateful call returned {other:?}, not its declared type"
                )))
            }
        }
        Ok(())
    }

    fn finish(self) -> ArrayRef {
        match self {
            Output::Float64(mut b) => std::sync::Arc::new(b.finish()),
            Output::Boolean(mut b) => std::sync::Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;
    use std::sync::Arc;
    use weir_udfs::stateful::StatefulKind;

    fn strings(values: impl IntoIterator<Item = String>) -> ArrayRef {
        Arc::new(StringArray::from_iter_values(values))
    }

    /// Dropping some entities moves the others to new places: each must still be found as
    /// itself, and a dropped one not at all.
    #[test]
    fn entities_kept_by_retain_are_found_at_their_new_places() {
        let mut entities = Entities::default();
        let names = StringArray::from_iter_values((0..1000).map(|i| format!("e{i}")));
        let (places, added) = entities.place_rows(&names, || StatefulKind::IsNovel.new_state());
        assert_eq!(places, added);
        for place in &places {
            entities.list[*place as usize].dirty = place % 3 == 0;
        }
        entities.retain(|r| r.dirty);
        assert_eq!(entities.len(), 334);
        for i in 0..1000u32 {
            let name = format!("e{i}");
            let found = entities.find(entities.hasher.hash_one(name.as_str()), &name);
            match found {
                Some(place) => assert_eq!(&*entities.list[place as usize].entity, name),
                None => assert!(i % 3 != 0, "{name} was kept but is not found"),
            }
            assert_eq!(found.is_some(), i % 3 == 0, "{name}");
        }
    }

    /// A stored state that does not decode fails the batch, and the entities the batch added
    /// are forgotten (none is left holding a new state in place of its stored one).
    #[test]
    fn an_undecodable_stored_state_fails_the_batch_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let keys = ViewKeys::new("v");
        let mut ws = WriteSet::default();
        ws.put(Table::GroupState, keys.group(0, b"bad"), [0xff_u8; 3]);
        store.write(&ws).unwrap();
        let mut states = EntityStates::new(keys);
        let call = StatefulCall {
            kind: StatefulKind::IsNovel,
            slot: 0,
            args: Vec::new(),
        };
        let good = [strings(["a".into()]), strings(["x".into()])];
        states.evaluate(&call, &good, 1, &store).unwrap();
        let bad = [
            strings(["b".into(), "bad".into(), "c".into()]),
            strings(["x".into(), "x".into(), "x".into()]),
        ];
        let error = states.evaluate(&call, &bad, 3, &store).unwrap_err();
        assert!(error.to_string().contains("does not decode"), "{error}");
        assert_eq!(states.resident[0].len(), 1);
        // What was resident before still is, as itself.
        let again = states.evaluate(&call, &good, 1, &store).unwrap();
        assert!(!again.as_boolean().value(0), "learnt twice");
    }

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
