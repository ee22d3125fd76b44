//! A partition's own librdkafka queue, read many messages per call.
//!
//! The `rdkafka` crate hands out a partition queue's messages one per `poll`, and each call
//! reads the clock twice, takes the queue's lock, wraps the message in an event and allocates
//! a handle for it: at a few hundred thousand messages a second that was about half of the
//! Kafka reader thread's time. librdkafka's `rd_kafka_consume_batch_queue` takes up to N
//! messages per call; the crate does not offer it for a partition queue, so this module calls
//! it through the crate's own bindings, in one small unsafe wrapper.

use std::ffi::{c_void, CString};
use std::ptr::NonNull;
use std::sync::Arc;

use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};

/// Messages taken from librdkafka per call.
const BATCH: usize = 256;

/// One Kafka message as a poll round needs it.
pub(super) struct Record<'a> {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) payload: &'a [u8],
    pub(super) key: Option<&'a [u8]>,
    /// The message's timestamp in milliseconds, when it has one.
    pub(super) timestamp_ms: Option<i64>,
}

impl<'a> Record<'a> {
    /// A message polled from the consumer's own queue.
    pub(super) fn of_message(m: &'a BorrowedMessage<'_>) -> Self {
        Self {
            partition: m.partition(),
            offset: m.offset(),
            payload: m.payload().unwrap_or_default(),
            key: m.key(),
            timestamp_ms: m.timestamp().to_millis().filter(|t| *t >= 0),
        }
    }

    /// # Safety
    /// `m` must be a valid message that outlives `'a`.
    unsafe fn of_native(m: &'a rdsys::rd_kafka_message_t) -> Self {
        let bytes = |at: *mut c_void, len: usize| {
            // SAFETY: librdkafka's message holds `len` bytes at `at` while it lives.
            (!at.is_null()).then(|| unsafe { std::slice::from_raw_parts(at as *const u8, len) })
        };
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: `m` is valid; the call only reads it.
        let timestamp = unsafe { rdsys::rd_kafka_message_timestamp(m, &mut kind) };
        Self {
            partition: m.partition,
            offset: m.offset,
            payload: bytes(m.payload, m.len).unwrap_or_default(),
            key: bytes(m.key, m.key_len),
            timestamp_ms: (timestamp >= 0).then_some(timestamp),
        }
    }
}

/// The queue of one partition, split off the consumer's queue.
pub(super) struct BatchQueue<C: ConsumerContext + 'static> {
    queue: NonNull<rdsys::rd_kafka_queue_t>,
    /// The callback librdkafka calls when the queue gets messages; kept alive while enabled.
    wake: Option<Box<Box<dyn Fn() + Send + Sync>>>,
    /// The queue belongs to the consumer's handle, which must outlive it.
    _consumer: Arc<BaseConsumer<C>>,
}

// SAFETY: librdkafka's queues are thread-safe; the wrapper owns its queue handle.
unsafe impl<C: ConsumerContext + 'static> Send for BatchQueue<C> {}

impl<C: ConsumerContext + 'static> BatchQueue<C> {
    /// Splits partition `partition` of `topic` off the consumer's queue (call it before the
    /// partition is assigned). None when librdkafka has no such partition queue.
    pub(super) fn split(
        consumer: &Arc<BaseConsumer<C>>,
        topic: &str,
        partition: i32,
    ) -> Option<Self> {
        let topic = CString::new(topic).ok()?;
        // SAFETY: the client handle is valid while `consumer` lives, and this returns a new
        // reference to the partition's queue (or null).
        let queue = unsafe {
            rdsys::rd_kafka_queue_get_partition(
                consumer.client().native_ptr(),
                topic.as_ptr(),
                partition,
            )
        };
        let queue = NonNull::new(queue)?;
        // SAFETY: `queue` is valid; forwarding to null makes it keep its own messages.
        unsafe { rdsys::rd_kafka_queue_forward(queue.as_ptr(), std::ptr::null_mut()) };
        Some(Self {
            queue,
            wake: None,
            _consumer: consumer.clone(),
        })
    }

    /// Calls `wake` whenever the queue receives messages while empty.
    pub(super) fn on_messages(&mut self, wake: impl Fn() + Send + Sync + 'static) {
        unsafe extern "C" fn call(_: *mut rdsys::rd_kafka_t, opaque: *mut c_void) {
            let f = opaque as *const Box<dyn Fn() + Send + Sync>;
            // SAFETY: `opaque` is the boxed callback, alive while the callback is enabled.
            unsafe { (**f)() }
        }
        let f: Box<Box<dyn Fn() + Send + Sync>> = Box::new(Box::new(wake));
        // SAFETY: the callback's box stays in `self.wake` until the callback is replaced or
        // disabled (in `drop`).
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(
                self.queue.as_ptr(),
                Some(call),
                &*f as *const Box<dyn Fn() + Send + Sync> as *mut c_void,
            )
        };
        self.wake = Some(f);
    }

    /// Takes up to `max` messages without waiting and hands each to `f` (a message that
    /// carries an error as the error). Returns how many it took.
    pub(super) fn take(
        &self,
        max: usize,
        mut f: impl FnMut(Result<Record<'_>, KafkaError>),
    ) -> usize {
        let mut taken = 0;
        let mut batch = [std::ptr::null_mut::<rdsys::rd_kafka_message_t>(); BATCH];
        while taken < max {
            let want = (max - taken).min(BATCH);
            // SAFETY: `batch` has room for `want` pointers; with a timeout of 0 the call does
            // not wait. It returns how many it wrote, or -1 on error.
            let n = unsafe {
                rdsys::rd_kafka_consume_batch_queue(
                    self.queue.as_ptr(),
                    0,
                    batch.as_mut_ptr(),
                    want,
                )
            };
            let Ok(n) = usize::try_from(n) else { break };
            for &message in &batch[..n] {
                // SAFETY: librdkafka returned `n` valid messages, each ours to destroy once.
                let m = unsafe { &*message };
                if m.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    // SAFETY: `m` lives until the destroy below, after `f` returned.
                    f(Ok(unsafe { Record::of_native(m) }));
                } else {
                    f(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::from(
                        m.err,
                    ))));
                }
                // SAFETY: destroyed once, and not used after.
                unsafe { rdsys::rd_kafka_message_destroy(message) };
            }
            taken += n;
            if n < want {
                break;
            }
        }
        taken
    }
}

impl<C: ConsumerContext + 'static> Drop for BatchQueue<C> {
    fn drop(&mut self) {
        // SAFETY: the callback is disabled before its box is freed (after this body), and the
        // queue reference taken in `split` is released once.
        unsafe {
            rdsys::rd_kafka_queue_cb_event_enable(self.queue.as_ptr(), None, std::ptr::null_mut());
            rdsys::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};

    use super::*;
    use crate::source::EmbeddedKafka;

    /// A partition's messages come out of its queue once each, in offset order, with payload,
    /// key and timestamp, at most `max` per call; the callback fires when messages arrive.
    #[test]
    fn a_partition_queue_hands_out_its_messages_in_order_in_batches() {
        let kafka = EmbeddedKafka::start(1, "batched", 2).unwrap();
        for n in 0..1_000i32 {
            let key = format!("k{n}");
            kafka
                .send(n % 2, Some(&key), format!("{{\"n\":{n}}}").as_bytes())
                .unwrap();
        }
        kafka.flush().unwrap();
        let consumer: Arc<BaseConsumer> = Arc::new(
            ClientConfig::new()
                .set("bootstrap.servers", kafka.bootstrap())
                .set("group.id", "weir-batch-test")
                .set("enable.auto.commit", "false")
                .create()
                .unwrap(),
        );
        let mut queue = BatchQueue::split(&consumer, "batched", 1).unwrap();
        let woken = Arc::new(AtomicUsize::new(0));
        let counter = woken.clone();
        queue.on_messages(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        let mut list = TopicPartitionList::new();
        list.add_partition_offset("batched", 1, Offset::Beginning)
            .unwrap();
        consumer.assign(&list).unwrap();
        let mut seen = Vec::new();
        for _ in 0..1_000 {
            if seen.len() >= 500 {
                break;
            }
            // The consumer's own queue is served too, as the reader does.
            let _ = consumer.poll(Duration::ZERO);
            let took = queue.take(64, |m| {
                let m = m.expect("no consumer error");
                seen.push((
                    m.partition,
                    m.offset,
                    m.payload.to_vec(),
                    m.key.map(<[u8]>::to_vec),
                    m.timestamp_ms,
                ));
            });
            assert!(took <= 64, "took {took}");
            if took == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        assert_eq!(seen.len(), 500);
        for (i, (partition, offset, payload, key, timestamp)) in seen.iter().enumerate() {
            // Partition 1 holds the odd messages.
            let n = 2 * i + 1;
            assert_eq!((*partition, *offset), (1, i as i64));
            assert_eq!(payload.as_slice(), format!("{{\"n\":{n}}}").as_bytes());
            assert_eq!(key.as_deref(), Some(format!("k{n}").as_bytes()));
            assert!(timestamp.is_some_and(|t| t > 0), "{timestamp:?}");
        }
        assert!(
            woken.load(Ordering::Relaxed) > 0,
            "the callback never fired"
        );
    }
}
