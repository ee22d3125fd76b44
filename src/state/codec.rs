//! Key and value encodings: order-preserving window keys and Arrow IPC record batches.

use std::io::Cursor;

use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;

/// `name \0` — the prefix of every key that belongs to one view or source.
pub fn window_key_prefix(name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(name.len() + 9);
    key.extend_from_slice(name.as_bytes());
    key.push(0);
    key
}

/// `name \0 start` with the window start encoded so byte order equals time order.
pub fn window_key(name: &str, window_start: i64) -> Vec<u8> {
    let mut key = window_key_prefix(name);
    key.extend_from_slice(&((window_start as u64) ^ (1 << 63)).to_be_bytes());
    key
}

/// The window start stored in a key made by [`window_key`].
pub fn window_start_of_key(key: &[u8]) -> Option<i64> {
    let tail: [u8; 8] = key.get(key.len().checked_sub(8)?..)?.try_into().ok()?;
    Some((u64::from_be_bytes(tail) ^ (1 << 63)) as i64)
}

/// Encodes one batch as an Arrow IPC stream.
pub fn batch_to_ipc(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut buf = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut buf, &batch.schema())?;
        writer.write(batch)?;
        writer.finish()?;
    }
    Ok(buf)
}

/// Decodes a batch written by [`batch_to_ipc`].
pub fn batch_from_ipc(bytes: &[u8]) -> Result<RecordBatch, ArrowError> {
    let mut reader = StreamReader::try_new(Cursor::new(bytes), None)?;
    match reader.next() {
        Some(batch) => batch,
        None => Err(ArrowError::IpcError("empty IPC stream".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keys_sort_in_time_order() {
        let times = [-5_000i64, -1, 0, 1, 60_000, i64::MAX, i64::MIN];
        let mut keys: Vec<_> = times.iter().map(|t| window_key("v", *t)).collect();
        keys.sort();
        let decoded: Vec<i64> = keys
            .iter()
            .map(|k| window_start_of_key(k).unwrap())
            .collect();
        let mut expected = times.to_vec();
        expected.sort();
        assert_eq!(decoded, expected);
    }
}
