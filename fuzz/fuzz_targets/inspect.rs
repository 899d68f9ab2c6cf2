#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orthweb::fuzzing::inspect(data));
