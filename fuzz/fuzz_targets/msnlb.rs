//! Windows NLB heartbeats: decode never panics on any payload, cut or whole.
#![no_main]
use libfuzzer_sys::fuzz_target;
use nlb_wire::msnlb::MsNlbHeartbeat;

fuzz_target!(|data: &[u8]| {
    if let Ok(heartbeat) = MsNlbHeartbeat::decode(data) {
        if let Some(cut) = heartbeat.truncation {
            assert_eq!(cut.captured, data.len());
        }
    }
});
