//! The pod-image rule (`stoa-podimages`) on any input: `list` and `rewrite`
//! never panic, and a rewrite's output is read again alike (memory stays
//! within the crate's caps; scripts/fuzz.sh runs it with -rss_limit_mb).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let listed = stoa_podimages::list(text);
    // a site name as the real resolver writes one: host, path and tag (a
    // referenced image outside `image:` fields is read back as a full
    // reference, so a name without a tag would not be)
    let rewritten = stoa_podimages::rewrite(text, &|i| Ok(format!("reg.site/x/y{}:t", i.len())));
    match (&listed, &rewritten) {
        (Ok(l), Ok(r)) => {
            assert_eq!(
                l.len(),
                r.images.len(),
                "list and rewrite see the same images"
            );
            // what rewrite emits is read again, with the same images
            let again = stoa_podimages::list(&r.text).expect("rewrite output reads back");
            assert_eq!(again.len(), l.len());
        }
        (Err(_), Err(_)) => {}
        _ => panic!(
            "list and rewrite disagree: {listed:?} / {:?}",
            rewritten.as_ref().map(|r| r.images.len())
        ),
    }
});
