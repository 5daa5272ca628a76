#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    gateway::fuzzing::eservice_bodies(data);
});
