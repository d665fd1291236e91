//! Writes test and demo fixtures: `stoa-fixtures sample-images <layout> <version>…`,
//! `stoa-fixtures stack-images <layout>` (stand-ins for the Full On-Premises
//! stack's upstream images, for the local mirror) and
//! `stoa-fixtures bench-layout <layout> <images> <layer-MiB>`.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("sample-images") if args.len() >= 3 => {
            let images: Vec<_> = args[2..]
                .iter()
                .flat_map(|v| stoa_e2e::oci_fixture::sample_images(v))
                .collect();
            stoa_e2e::oci_fixture::write_layout(Path::new(&args[1]), &images)
        }
        Some("stack-images") if args.len() == 2 => {
            // the layout, and on stdout one `<ref name> <upstream name>` a line
            let images = stoa_e2e::oci_fixture::stack_images();
            let layout: Vec<_> = images.iter().map(|(_, i)| i.clone()).collect();
            stoa_e2e::oci_fixture::write_layout(Path::new(&args[1]), &layout).map(|()| {
                for (name, img) in &images {
                    println!("{} {name}", img.ref_name);
                }
            })
        }
        Some("bench-layout") if args.len() == 4 => {
            let (Ok(n), Ok(mib)) = (args[2].parse::<usize>(), args[3].parse::<u64>()) else {
                eprintln!("stoa-fixtures: bench-layout <layout> <images> <layer-MiB>");
                return ExitCode::from(2);
            };
            stoa_e2e::oci_fixture::write_bench_layout(Path::new(&args[1]), n, mib << 20)
        }
        Some("fuzz-seeds") if args.len() == 8 => {
            let p = |i: usize| Path::new(&args[i]);
            fuzz_seeds(p(1), p(2), p(3), p(4), p(5), p(6), p(7))
        }
        _ => {
            eprintln!("usage: stoa-fixtures sample-images <layout> <version>… | stack-images <layout> | bench-layout <layout> <images> <layer-MiB> | fuzz-seeds <out> <bundle-a> <bundle-b> <key> <root.json> <root.key> <release.pub>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stoa-fixtures: error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Seed corpora for the fuzz targets (scripts/fuzz.sh), one folder per
/// target, made from the named negative fixtures: every tamper fixture as a
/// bundle (`zstd_frames`), its tar stream when it decompresses (`tar`), its
/// first entry (`manifest`); the named bad roots and a good one (`root`).
fn fuzz_seeds(
    out: &Path,
    a: &Path,
    b: &Path,
    key: &Path,
    root: &Path,
    root_key: &Path,
    release_pub: &Path,
) -> std::io::Result<()> {
    use stoa_e2e::tamper::{self, Base};
    let base = Base::from_file(a, key);
    let other = Base::from_file(b, key);
    for d in ["zstd_frames", "tar", "manifest", "root"] {
        std::fs::create_dir_all(out.join(d))?;
    }
    let mut all: Vec<(String, Vec<u8>)> = vec![
        ("base".into(), base.bundle.clone()),
        ("other".into(), other.bundle.clone()),
    ];
    for f in tamper::all(&base, &other) {
        all.push((f.name.to_owned(), f.bytes));
    }
    std::panic::set_hook(Box::new(|_| {}));
    for (name, bytes) in &all {
        std::fs::write(out.join("zstd_frames").join(name), bytes)?;
        let Ok(t) = zstd::decode_all(&bytes[..]) else {
            continue;
        };
        std::fs::write(out.join("tar").join(name), &t)?;
        if let Ok(entries) = std::panic::catch_unwind(|| tamper::read_tar(&t)) {
            if let Some(e) = entries.first() {
                std::fs::write(out.join("manifest").join(name), &e.data)?;
            }
        }
    }
    let _ = std::panic::take_hook();
    std::fs::copy(root, out.join("root").join("valid"))?;
    for f in stoa_e2e::root_fixture::ALL {
        f.write(
            &out.join("root").join(format!("{f:?}")),
            root,
            root_key,
            release_pub,
        );
    }
    Ok(())
}
