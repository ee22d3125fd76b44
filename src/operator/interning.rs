//! Group keys of one column, interned by tables that look ahead: the key table of a window's
//! partial aggregate ([`super::groups::GroupState`]) when it groups by one integer-like or
//! string column.
//!
//! DataFusion's one-column `GroupValues` look rows up one after another. Once a view holds
//! more groups than the CPU's caches do (a million users), each row waits for a cache miss on
//! the table: 38% of a 1M-key view's operator thread was that wait. These tables hash a whole
//! batch first, then ask for the slot of the row [`LOOK_AHEAD`] rows on while they look up the
//! current one, so the misses of many rows overlap. An integer key lives in its slot (one
//! cache line per lookup); a string key's slot is 8 bytes, half its hash and its group, so its
//! bytes are compared only on a match of that half. Other key types, and several key columns,
//! keep DataFusion's tables (`new_group_values`); the trait is DataFusion's, so accumulators
//! see no difference.
//!
//! Groups are numbered in the order they first appear, a null key is one group, and
//! [`GroupValues::emit`] gives the keys in group order, as DataFusion's tables do.

use std::marker::PhantomData;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray, StringArray};
use datafusion::arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Date64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_plan::aggregates::group_values::GroupValues;

use super::prefetch::prefetch;

/// How many rows ahead a lookup asks for its slot: enough misses in flight to cover a trip
/// to memory, few enough that the slots are still cached when their row comes.
const LOOK_AHEAD: usize = 16;

/// The smallest table, in slots.
const MIN_SLOTS: usize = 64;

/// A table for one group column of `data_type`, or None where DataFusion's is used. Its
/// slots are allocated at the first batch, with room for `groups` groups (a guess; the table
/// grows past it as needed).
pub fn one_column_table(data_type: &DataType, groups: usize) -> Option<Box<dyn GroupValues>> {
    let ints =
        |make: fn(DataType, usize) -> Box<dyn GroupValues>| Some(make(data_type.clone(), groups));
    match data_type {
        DataType::Int8 => ints(IntGroups::<Int8Type>::boxed),
        DataType::Int16 => ints(IntGroups::<Int16Type>::boxed),
        DataType::Int32 => ints(IntGroups::<Int32Type>::boxed),
        DataType::Int64 => ints(IntGroups::<Int64Type>::boxed),
        DataType::UInt8 => ints(IntGroups::<UInt8Type>::boxed),
        DataType::UInt16 => ints(IntGroups::<UInt16Type>::boxed),
        DataType::UInt32 => ints(IntGroups::<UInt32Type>::boxed),
        DataType::UInt64 => ints(IntGroups::<UInt64Type>::boxed),
        DataType::Date32 => ints(IntGroups::<Date32Type>::boxed),
        DataType::Date64 => ints(IntGroups::<Date64Type>::boxed),
        DataType::Timestamp(TimeUnit::Second, _) => ints(IntGroups::<TimestampSecondType>::boxed),
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            ints(IntGroups::<TimestampMillisecondType>::boxed)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            ints(IntGroups::<TimestampMicrosecondType>::boxed)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            ints(IntGroups::<TimestampNanosecondType>::boxed)
        }
        DataType::Utf8 => Some(Box::new(StrGroups::new(groups))),
        _ => None,
    }
}

/// An integer key as the 64 bits its slot holds: equal keys, equal bits.
pub trait IntKey: Copy + Default + Send + 'static {
    fn bits(self) -> u64;
}

macro_rules! int_key {
    ($($t:ty),*) => {$(
        impl IntKey for $t {
            #[inline(always)]
            fn bits(self) -> u64 {
                self as u64
            }
        }
    )*};
}
int_key!(i8, i16, i32, i64, u8, u16, u32, u64);

/// What a table's slot holds: a word that tells keys apart before they are compared, and the
/// key's group number plus one (0: the slot is empty).
trait TableSlot: Copy + Default {
    fn new(word: u64, group: u32) -> Self;
    fn word(self) -> u64;
    fn group(self) -> u32;
}

/// An integer key's slot: the key's bits, so a lookup compares the key in the slot itself.
#[derive(Clone, Copy, Default)]
struct IntSlot {
    word: u64,
    group: u32,
}

impl TableSlot for IntSlot {
    #[inline(always)]
    fn new(word: u64, group: u32) -> Self {
        Self { word, group }
    }
    #[inline(always)]
    fn word(self) -> u64 {
        self.word
    }
    #[inline(always)]
    fn group(self) -> u32 {
        self.group
    }
}

/// A string key's slot in 8 bytes: the low half of the key's hash (high 32 bits) and the
/// group (low 32 bits). Half the size of an [`IntSlot`], so a million keys' table is 16 MB
/// instead of 32: fewer pages to touch and more of it in the CPU's caches. The low half of
/// the hash is enough to place the slot again when the table grows (a table's slots are
/// numbered by the hash's low bits; string keys are held in under 2 GiB, so a table has far
/// fewer than 2^32 slots) and to skip most key comparisons.
#[derive(Clone, Copy, Default)]
struct TagSlot(u64);

impl TableSlot for TagSlot {
    #[inline(always)]
    fn new(word: u64, group: u32) -> Self {
        Self((word << 32) | u64::from(group))
    }
    #[inline(always)]
    fn word(self) -> u64 {
        self.0 >> 32
    }
    #[inline(always)]
    fn group(self) -> u32 {
        self.0 as u32
    }
}

/// Open addressing with linear probing, at most half full. Its slots are allocated when the
/// first batch comes (a drained table allocates nothing until it is used again).
struct Table<S> {
    slots: Vec<S>,
    mask: usize,
    used: usize,
    /// Groups to make room for when the slots are allocated.
    hint: usize,
}

impl<S: TableSlot> Table<S> {
    fn new(groups: usize) -> Self {
        let n = (groups * 2).next_power_of_two().max(MIN_SLOTS);
        Self {
            slots: vec![S::default(); n],
            mask: n - 1,
            used: 0,
            hint: groups,
        }
    }

    /// An empty table without slots yet, to be sized for `hint` groups.
    fn unallocated(hint: usize) -> Self {
        Self {
            slots: Vec::new(),
            mask: 0,
            used: 0,
            hint,
        }
    }

    /// Allocates the slots if they are not yet.
    fn ready(&mut self) {
        if self.slots.is_empty() {
            *self = Table::new(self.hint);
        }
    }

    #[inline(always)]
    fn prefetch(&self, hash: u64) {
        prefetch(&self.slots[hash as usize & self.mask]);
    }

    /// The group whose slot `is_key` accepts, searching from `hash`; or the empty slot where
    /// that key goes.
    #[inline(always)]
    fn find(&self, hash: u64, is_key: impl Fn(S) -> bool) -> Result<usize, usize> {
        let mut at = hash as usize & self.mask;
        loop {
            let slot = self.slots[at];
            if slot.group() == 0 {
                return Err(at);
            }
            if is_key(slot) {
                return Ok(slot.group() as usize - 1);
            }
            at = (at + 1) & self.mask;
        }
    }

    /// Puts group `group` in empty slot `at`. Returns false when the table must grow first
    /// (then nothing was put).
    #[inline(always)]
    fn put(&mut self, at: usize, word: u64, group: usize) -> Result<bool> {
        if (self.used + 1) * 2 > self.slots.len() {
            return Ok(false);
        }
        let group = u32::try_from(group + 1)
            .ok()
            .filter(|g| *g != u32::MAX)
            .ok_or_else(|| {
                DataFusionError::ResourcesExhausted(
                    "a window holds more than 4 billion groups".into(),
                )
            })?;
        self.slots[at] = S::new(word, group);
        self.used += 1;
        Ok(true)
    }

    /// Puts a key the table does not hold, in a table sized to take it (a rebuild).
    fn put_new(&mut self, hash: u64, word: u64, group: usize) -> Result<()> {
        let at = self
            .find(hash, |_| false)
            .expect_err("a key that is not held finds an empty slot");
        let put = self.put(at, word, group)?;
        debug_assert!(put, "a rebuilt table is sized for its groups");
        Ok(())
    }

    /// Doubles the table; `hash` gives a slot's hash from its word.
    fn grow(&mut self, hash: impl Fn(u64) -> u64) {
        let mut bigger = Table::new(self.slots.len());
        for slot in self.slots.iter().filter(|s| s.group() != 0) {
            let at = bigger
                .find(hash(slot.word()), |_| false)
                .expect_err("a fresh table has no keys");
            bigger.slots[at] = *slot;
        }
        bigger.used = self.used;
        *self = bigger;
    }

    fn bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<S>()
    }
}

/// `x` scrambled by a folded multiply: keys that differ in a few bits land far apart.
#[inline(always)]
fn scramble(x: u64, seed: u64) -> u64 {
    let p = u128::from(x ^ seed) * 0x9E37_79B9_7F4A_7C15;
    (p as u64) ^ ((p >> 64) as u64)
}

/// A per-table seed, so that keys cannot be chosen to collide.
fn seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0u64)
}

/// The null buffer of `n` groups where group `null` (if any) is the null key.
fn nulls(n: usize, null: Option<usize>) -> Option<NullBuffer> {
    null.map(|g| NullBuffer::from_iter((0..n).map(|i| i != g)))
}

/// The null group after emitting the first `n` groups: (the emitted one, the kept one).
fn split_null(null: Option<usize>, n: usize) -> (Option<usize>, Option<usize>) {
    match null {
        Some(g) if g < n => (Some(g), None),
        Some(g) => (None, Some(g - n)),
        None => (None, None),
    }
}

/// Groups of one integer-like column.
struct IntGroups<T: ArrowPrimitiveType> {
    data_type: DataType,
    table: Table<IntSlot>,
    values: Vec<T::Native>,
    null: Option<usize>,
    seed: u64,
    hashes: Vec<u64>,
    _type: PhantomData<fn() -> T>,
}

impl<T: ArrowPrimitiveType> IntGroups<T>
where
    T::Native: IntKey,
{
    fn new(data_type: DataType, groups: usize) -> Self {
        Self {
            data_type,
            table: Table::unallocated(groups),
            values: Vec::new(),
            null: None,
            seed: seed(),
            hashes: Vec::new(),
            _type: PhantomData,
        }
    }

    fn boxed(data_type: DataType, groups: usize) -> Box<dyn GroupValues> {
        Box::new(Self::new(data_type, groups))
    }

    /// Puts every group again, numbered as `values` now are.
    fn rebuild(&mut self) -> Result<()> {
        self.table = Table::new(self.values.len());
        for (g, v) in self.values.iter().enumerate() {
            if Some(g) == self.null {
                continue;
            }
            let bits = v.bits();
            self.table.put_new(scramble(bits, self.seed), bits, g)?;
        }
        Ok(())
    }
}

impl<T: ArrowPrimitiveType> GroupValues for IntGroups<T>
where
    T::Native: IntKey,
{
    fn intern(&mut self, cols: &[ArrayRef], groups: &mut Vec<usize>) -> Result<()> {
        let keys = cols[0].as_primitive::<T>();
        let seed = self.seed;
        groups.clear();
        self.table.ready();
        self.hashes.clear();
        self.hashes
            .extend(keys.values().iter().map(|v| scramble(v.bits(), seed)));
        for (i, value) in keys.values().iter().enumerate() {
            if let Some(ahead) = self.hashes.get(i + LOOK_AHEAD) {
                self.table.prefetch(*ahead);
            }
            if keys.is_null(i) {
                let next = self.values.len();
                let g = *self.null.get_or_insert(next);
                if g == next {
                    self.values.push(T::Native::default());
                }
                groups.push(g);
                continue;
            }
            let bits = value.bits();
            let hash = self.hashes[i];
            let g = loop {
                match self.table.find(hash, |s| s.word() == bits) {
                    Ok(g) => break g,
                    Err(at) => {
                        let g = self.values.len();
                        if self.table.put(at, bits, g)? {
                            self.values.push(*value);
                            break g;
                        }
                        self.table.grow(|w| scramble(w, seed));
                    }
                }
            };
            groups.push(g);
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.table.bytes()
            + self.values.capacity() * std::mem::size_of::<T::Native>()
            + self.hashes.capacity() * 8
    }

    fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn len(&self) -> usize {
        self.values.len()
    }

    fn emit(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (values, null) = match emit_to {
            EmitTo::All => {
                let values = std::mem::take(&mut self.values);
                self.table = Table::unallocated(0);
                (values, self.null.take())
            }
            EmitTo::First(n) => {
                let rest = self.values.split_off(n.min(self.values.len()));
                let values = std::mem::replace(&mut self.values, rest);
                let (emitted, kept) = split_null(self.null, n);
                self.null = kept;
                self.rebuild()?;
                (values, emitted)
            }
        };
        let n = values.len();
        let array = PrimitiveArray::<T>::new(ScalarBuffer::from(values), nulls(n, null))
            .with_data_type(self.data_type.clone());
        Ok(vec![Arc::new(array)])
    }

    fn clear_shrink(&mut self, num_rows: usize) {
        self.values.clear();
        self.values.shrink_to(num_rows);
        self.null = None;
        self.hashes = Vec::new();
        self.table = Table::unallocated(num_rows);
    }
}

/// Groups of one string column: the keys' bytes end to end, as an Arrow string array's.
struct StrGroups {
    table: Table<TagSlot>,
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    null: Option<usize>,
    hasher: ahash::RandomState,
    hashes: Vec<u64>,
}

impl StrGroups {
    fn new(groups: usize) -> Self {
        Self {
            table: Table::unallocated(groups),
            offsets: vec![0],
            bytes: Vec::new(),
            null: None,
            hasher: ahash::RandomState::new(),
            hashes: Vec::new(),
        }
    }

    fn key<'a>(offsets: &[i32], bytes: &'a [u8], g: usize) -> &'a [u8] {
        &bytes[offsets[g] as usize..offsets[g + 1] as usize]
    }

    fn push(&mut self, key: &[u8]) -> Result<()> {
        self.bytes.extend_from_slice(key);
        let end = i32::try_from(self.bytes.len()).map_err(|_| {
            DataFusionError::ResourcesExhausted("a window's string group keys passed 2 GiB".into())
        })?;
        self.offsets.push(end);
        Ok(())
    }

    /// Puts every group again, numbered as `offsets` now are.
    fn rebuild(&mut self) -> Result<()> {
        let n = self.offsets.len() - 1;
        self.table = Table::new(n);
        for g in (0..n).filter(|g| Some(*g) != self.null) {
            let hash = self
                .hasher
                .hash_one(Self::key(&self.offsets, &self.bytes, g));
            self.table.put_new(hash, hash, g)?;
        }
        Ok(())
    }
}

impl GroupValues for StrGroups {
    fn intern(&mut self, cols: &[ArrayRef], groups: &mut Vec<usize>) -> Result<()> {
        let keys = cols[0].as_string::<i32>();
        groups.clear();
        self.table.ready();
        self.hashes.clear();
        let hasher = &self.hasher;
        self.hashes
            .extend((0..keys.len()).map(|i| hasher.hash_one(keys.value(i).as_bytes())));
        for i in 0..keys.len() {
            if let Some(ahead) = self.hashes.get(i + LOOK_AHEAD) {
                self.table.prefetch(*ahead);
            }
            if keys.is_null(i) {
                let next = self.offsets.len() - 1;
                let g = *self.null.get_or_insert(next);
                if g == next {
                    self.push(&[])?;
                }
                groups.push(g);
                continue;
            }
            let key = keys.value(i).as_bytes();
            let hash = self.hashes[i];
            let g = loop {
                let (offsets, bytes) = (&self.offsets, &self.bytes);
                let found = self.table.find(hash, |s| {
                    s.word() == hash & 0xFFFF_FFFF
                        && Self::key(offsets, bytes, s.group() as usize - 1) == key
                });
                match found {
                    Ok(g) => break g,
                    Err(at) => {
                        let g = self.offsets.len() - 1;
                        if self.table.put(at, hash, g)? {
                            self.push(key)?;
                            break g;
                        }
                        self.table.grow(|w| w);
                    }
                }
            };
            groups.push(g);
        }
        Ok(())
    }

    fn size(&self) -> usize {
        self.table.bytes()
            + self.offsets.capacity() * 4
            + self.bytes.capacity()
            + self.hashes.capacity() * 8
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    fn emit(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (offsets, bytes, null) = match emit_to {
            EmitTo::All => {
                self.table = Table::unallocated(0);
                let offsets = std::mem::replace(&mut self.offsets, vec![0]);
                (offsets, std::mem::take(&mut self.bytes), self.null.take())
            }
            EmitTo::First(n) => {
                let n = n.min(self.len());
                let cut = self.offsets[n];
                let rest: Vec<i32> = self.offsets[n..].iter().map(|o| o - cut).collect();
                let mut offsets = std::mem::replace(&mut self.offsets, rest);
                offsets.truncate(n + 1);
                let rest_bytes = self.bytes.split_off(cut as usize);
                let bytes = std::mem::replace(&mut self.bytes, rest_bytes);
                let (emitted, kept) = split_null(self.null, n);
                self.null = kept;
                self.rebuild()?;
                (offsets, bytes, emitted)
            }
        };
        let n = offsets.len() - 1;
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        // SAFETY: the offsets start at 0 and never fall, and the bytes between two of them
        // are one key copied whole from a string array, so valid UTF-8.
        let array =
            unsafe { StringArray::new_unchecked(offsets, Buffer::from_vec(bytes), nulls(n, null)) };
        Ok(vec![Arc::new(array)])
    }

    fn clear_shrink(&mut self, num_rows: usize) {
        self.offsets = vec![0];
        self.bytes = Vec::new();
        self.null = None;
        self.hashes = Vec::new();
        self.table = Table::unallocated(num_rows);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::physical_plan::aggregates::group_values::new_group_values;
    use datafusion::physical_plan::aggregates::order::GroupOrdering;

    use crate::source::generator::mix;

    /// The next random word of a counter-based stream.
    fn splitmix(counter: &mut u64) -> u64 {
        *counter += 1;
        mix(*counter)
    }

    /// DataFusion's table for one column of `data_type`.
    fn datafusion_table(data_type: &DataType) -> Box<dyn GroupValues> {
        let schema = datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new("k", data_type.clone(), true),
        ]);
        new_group_values(Arc::new(schema), &GroupOrdering::None).unwrap()
    }

    /// Interns `batches` into ours and DataFusion's table, emitting now and then, and checks
    /// the same group numbers and the same emitted keys. Ours is sized for `emit_every`
    /// hundred groups at first (a guess that is too small or too large, as the test goes).
    fn same_as_datafusion(data_type: &DataType, batches: &[ArrayRef], emit_every: usize) {
        let mut ours = one_column_table(data_type, emit_every * 100).expect("a table of ours");
        let mut theirs = datafusion_table(data_type);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (i, batch) in batches.iter().enumerate() {
            ours.intern(std::slice::from_ref(batch), &mut a).unwrap();
            theirs.intern(std::slice::from_ref(batch), &mut b).unwrap();
            assert_eq!(a, b, "group numbers of batch {i}");
            assert_eq!(ours.len(), theirs.len());
            if (i + 1) % emit_every == 0 {
                let to = if i % 2 == 0 {
                    EmitTo::All
                } else {
                    EmitTo::First(ours.len() / 3)
                };
                assert_eq!(ours.emit(to).unwrap(), theirs.emit(to).unwrap());
                assert_eq!(ours.len(), theirs.len());
            }
        }
        assert_eq!(
            ours.emit(EmitTo::All).unwrap(),
            theirs.emit(EmitTo::All).unwrap()
        );
        assert!(ours.is_empty());
    }

    /// Twelve batches of up to 9,000 keys, each made by `key` from a random word; one key in
    /// 50 is null.
    fn random_batches<T>(
        state: &mut u64,
        key: impl Fn(u64) -> T,
        array: impl Fn(Vec<Option<T>>) -> ArrayRef,
    ) -> Vec<ArrayRef> {
        (0..12)
            .map(|_| {
                let rows = (splitmix(state) % 9000) as usize;
                let keys = (0..rows)
                    .map(|_| {
                        let r = splitmix(state);
                        (!r.is_multiple_of(50)).then(|| key(r >> 8))
                    })
                    .collect();
                array(keys)
            })
            .collect()
    }

    #[test]
    fn a_table_sized_for_its_groups_does_not_grow() {
        let keys: ArrayRef = Arc::new(Int64Array::from_iter_values(0..10_000));
        let mut groups = Vec::new();
        let mut sized = IntGroups::<Int64Type>::new(DataType::Int64, 10_000);
        sized
            .intern(std::slice::from_ref(&keys), &mut groups)
            .unwrap();
        let mut unsized_ = IntGroups::<Int64Type>::new(DataType::Int64, 0);
        unsized_
            .intern(std::slice::from_ref(&keys), &mut groups)
            .unwrap();
        // Both end at the same size; a table that grew was made anew, sized for its old
        // slots, so its hint says whether it did.
        assert_eq!(sized.table.slots.len(), unsized_.table.slots.len());
        assert_eq!(
            sized.table.hint, 10_000,
            "allocated once, at the size asked for"
        );
        assert_ne!(unsized_.table.hint, 0, "grew as rows came");
        let mut strings = StrGroups::new(10_000);
        let keys: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..10_000).map(|i| format!("k{i}")),
        ));
        strings
            .intern(std::slice::from_ref(&keys), &mut groups)
            .unwrap();
        assert_eq!(strings.table.hint, 10_000);
        assert_eq!(strings.len(), 10_000);
    }

    #[test]
    fn integer_keys_are_numbered_and_emitted_as_datafusion_does() {
        let mut state = 7u64;
        for (range, emit_every) in [(10i64, 3), (5_000, 4), (200_000, 1000)] {
            let batches = random_batches(
                &mut state,
                |r| r as i64 % range - 3,
                |keys| Arc::new(Int64Array::from(keys)),
            );
            same_as_datafusion(&DataType::Int64, &batches, emit_every);
        }
    }

    #[test]
    fn string_keys_are_numbered_and_emitted_as_datafusion_does() {
        let mut state = 11u64;
        for (range, emit_every) in [(10u64, 3), (5_000, 4), (100_000, 1000)] {
            // Empty strings and the null key are different groups.
            let batches = random_batches(
                &mut state,
                |r| match r % range {
                    0 => String::new(),
                    k => format!("user-{}-é", k * 7919),
                },
                |keys| Arc::new(StringArray::from(keys)),
            );
            same_as_datafusion(&DataType::Utf8, &batches, emit_every);
        }
    }

    #[test]
    fn timestamps_keep_their_type_and_zone() {
        let data_type = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
        let keys: ArrayRef = Arc::new(
            datafusion::arrow::array::TimestampMillisecondArray::from(vec![5, 1, 5, 9])
                .with_timezone("UTC"),
        );
        same_as_datafusion(&data_type, &[keys], 10);
    }

    #[test]
    fn other_key_types_keep_datafusions_tables() {
        assert!(one_column_table(&DataType::Float64, 0).is_none());
        assert!(one_column_table(&DataType::LargeUtf8, 0).is_none());
        assert!(one_column_table(&DataType::Utf8View, 0).is_none());
    }
}
