//! Fuzzes request-target resolution: whatever the target, the result is a list of plain
//! names (never `.`, `..`, empty, or containing `/` or NUL; any other bytes, as Linux names
//! are), and its canonical URL resolves back to the same names.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use plumb_proto::http::path::resolve_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let hidden = flags & 1 == 1;
    let target = String::from_utf8_lossy(rest);
    let Ok(p) = resolve_target(&target, hidden) else {
        return;
    };
    for seg in p.segments() {
        assert!(
            !seg.is_empty() && seg != b"." && seg != b"..",
            "{target:?} -> {seg:?}"
        );
        assert!(!seg.contains(&b'/') && !seg.contains(&0), "{target:?} -> {seg:?}");
        assert!(hidden || !seg.starts_with(b"."), "{target:?} -> {seg:?}");
    }
    assert!(!p.relative().has_root());
    for dir in [false, true] {
        let url = p.url(dir);
        assert!(url.starts_with('/') && !url.starts_with("//"), "{url}");
        let again = resolve_target(&url, hidden).expect("a canonical URL resolves");
        assert_eq!(again.relative(), p.relative(), "{target:?} -> {url}");
    }
});
