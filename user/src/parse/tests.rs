//! The parsers' tests, on lines as the module and the kernel print them.

use super::*;

#[test]
fn maps_lines_with_and_without_names() {
    let text = "55d0c000-55d2d000 rw-p 00000000 00:00 0                          [heap]\n\
                7f1200000000-7f1200101000 rw-p 00000000 00:00 0 \n\
                7f1300000000-7f1300002000 r--s 00003000 00:05 12 /dev/rust pagefault\n";
    let lines = parse_maps(text).unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0].name, "[heap]");
    assert_eq!((lines[0].start, lines[0].end), (0x55d0c000, 0x55d2d000));
    assert!(lines[0].contains(0x55d0c000) && !lines[0].contains(0x55d2d000));
    assert_eq!(lines[1].name, "");
    assert_eq!(lines[1].perms, "rw-p");
    assert_eq!(lines[2].name, "/dev/rust pagefault");
    assert_eq!((lines[2].perms.as_str(), lines[2].offset), ("r--s", 0x3000));
    assert!(parse_maps("zz-1 rw-p 0 0 0\n").is_err());
}

#[test]
fn zoneinfo_ranges() {
    let text = "Node 0, zone      DMA\n  pages free     0\n        spanned  0\n        present  0\n\
                Node 0, zone    DMA32\n  pages free     3977\n        min      21\n        spanned  524128\n        present  524128\n  \
                pagesets\n    cpu: 0\n              count: 10\n  node_unreclaimable:  0\n  start_pfn:           1\n\
                Node 0, zone   Normal\n        spanned  262144\n        present  262144\n  start_pfn:           1048576\n";
    let zones = parse_zoneinfo(text).unwrap();
    assert_eq!(zones.len(), 2, "the empty DMA zone is left out");
    assert_eq!(
        zones[0],
        Zone {
            node: 0,
            name: "DMA32".into(),
            start_pfn: 1,
            spanned: 524128,
            present: 524128
        }
    );
    assert!(zones[0].contains(0x3807) && !zones[0].contains(524129));
    assert!(zones[1].contains(1048576) && zones[1].name == "Normal");
    assert!(parse_zoneinfo("").is_err());
    assert!(parse_zoneinfo("Node x, zone DMA32\n spanned 4\n start_pfn: 1\n").is_err());
    assert!(parse_zoneinfo("Node 0, zone DMA32\n spanned 4\n").is_err());
}

#[test]
fn buddyinfo_rows_and_free_blocks() {
    let text = "Node 0, zone    DMA32      7      5      2      4      3      2      1      1      0      2    480 \n";
    let rows = parse_buddyinfo(text).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].node, rows[0].zone.as_str()), (0, "DMA32"));
    assert_eq!(rows[0].free.len(), 11);
    // Order 9: 2 blocks, order 10: 480 blocks of two order-9 blocks each.
    assert_eq!(rows[0].free_at_least(9), 2 + 480 * 2);
    assert_eq!(rows[0].free_at_least(10), 480);
    assert!(parse_buddyinfo("Node 0, zone DMA32 1 x\n").is_err());
    assert!(parse_buddyinfo("zone DMA32 1\n").is_err());
}

#[test]
fn kpageflags_bits_are_the_uapi_ones() {
    assert_eq!(KPF_LRU, 0x20);
    assert_eq!(KPF_SWAPBACKED, 0x4000);
    assert_eq!(KPF_ZERO_PAGE, 0x100_0000);
    assert_eq!(
        kpageflag_names(KPF_LRU | KPF_ANON | KPF_SWAPBACKED | (1 << 4)),
        ["LRU", "ANON", "SWAPBACKED"]
    );
    assert!(kpageflag_names(1 << 10).is_empty());
}

#[test]
fn cgroup2_path() {
    assert_eq!(parse_cgroup2_path("0::/\n").unwrap(), "/");
    assert_eq!(
        parse_cgroup2_path("1:name=systemd:/x\n0::/user.slice/a b\n").unwrap(),
        "/user.slice/a b"
    );
    assert!(parse_cgroup2_path("1:memory:/x\n").is_err());
}

#[test]
fn stats_parse_and_delta() {
    let a = Stats::parse("faults 3\nframes_live 2\n").unwrap();
    let b = Stats::parse("faults 10\nframes_live 1\n\n").unwrap();
    assert_eq!(b.get("faults"), 10);
    assert_eq!(b.delta(&a, "faults"), 7);
    assert_eq!(b.delta(&a, "frames_live"), -1);
    assert_eq!(b.get("missing"), 0);
    assert_eq!(b.value("faults"), Ok(10));
    assert!(b.value("missing").is_err());
    assert_eq!(
        b.missing(&["faults", "oom", "sigbus"]),
        vec!["oom", "sigbus"]
    );
    let all = Stats::REQUIRED.map(|n| format!("{n} 0")).join("\n");
    assert!(Stats::parse(&all)
        .unwrap()
        .missing(&Stats::REQUIRED)
        .is_empty());
}

#[test]
fn settings_label_names_what_differs_from_the_defaults() {
    let label = |text: &str| Stats::parse(text).unwrap().settings_label();
    let defaults = "prefault 1\nhuge 0\nmap_pages 1\nlatency 1\ninsert_pages 0\n";
    assert_eq!(label(defaults), "default");
    assert_eq!(
        label(&defaults.replace("prefault 1", "prefault 16")),
        "prefault=16"
    );
    // The recorder is off by default: on, it is part of the label.
    assert_eq!(
        label(&format!(
            "{}events 1\n",
            defaults.replace("prefault 1", "prefault 16")
        )),
        "prefault=16,events=1"
    );
    assert_eq!(label(&format!("{defaults}events 0\n")), "default");
    // The two switch sets of qemu/guest-test.sh, whatever order stats lists them in.
    assert_eq!(
        label("prefault 1\nhuge 0\nmap_pages 0\nlatency 0\ninsert_pages 1\n"),
        "map_pages=0,insert_pages=1,latency=0"
    );
    assert_eq!(
        label("prefault 1\nhuge 1\nmap_pages 0\nlatency 7\ninsert_pages 0\n"),
        "huge=1,map_pages=0,latency=7"
    );
}

#[test]
fn stats_malformed() {
    assert!(Stats::parse("faults\n").is_err());
    assert!(Stats::parse("faults x\n").is_err());
    assert!(Stats::parse("faults 1 2\n").is_err());
    assert!(Stats::parse("faults 1\nfaults 2\n").is_err());
    assert!(Stats::parse("faults -1\n").is_err());
}

#[test]
fn frames_rows() {
    let rows = parse_frames("# instance pgoff pfn phys\n1 0 0x1a2b 0x1a2b000\n2 7 0x10 0x10000\n")
        .unwrap();
    assert_eq!(
        rows,
        vec![
            FrameRow {
                instance: 1,
                pgoff: 0,
                pfn: 0x1a2b,
                phys: 0x1a2b000,
            },
            FrameRow {
                instance: 2,
                pgoff: 7,
                pfn: 0x10,
                phys: 0x10000,
            },
        ]
    );
    assert_eq!(parse_frames("# header only\n").unwrap(), vec![]);
}

#[test]
fn frames_malformed() {
    assert!(parse_frames("#\n1 2\n").is_err());
    assert!(parse_frames("#\n1 2 zz\n").is_err());
    // The phys column is the module's own, and required.
    assert!(parse_frames("#\n1 2 0x3\n").is_err());
    assert!(parse_frames("#\na 2 0x3\n").is_err());
}

#[test]
fn frames_need_the_header() {
    // Rows alone (a truncated read, another file) are refused, as is an empty text.
    assert!(parse_frames("1 0 0x1a2b 0x1a2b000\n").is_err());
    assert!(parse_frames("").is_err());
    assert!(parse_frames("\n# instance pgoff pfn phys\n").is_err());
    assert_eq!(parse_frames("# instance pgoff pfn phys\n").unwrap(), vec![]);
}

fn two_instances() -> FrameIndex {
    let row = |instance, pgoff, pfn: u64| FrameRow {
        instance,
        pgoff,
        pfn,
        phys: pfn << 12,
    };
    FrameIndex::new(&[
        row(1, 0, 0x100),
        row(1, 1, 0x101),
        row(1, 2, 0x102),
        row(2, 0, 0x200),
        row(2, 1, 0x201),
    ])
}

#[test]
fn verify_accepts_one_instance_and_private_copies() {
    let frames = two_instances();
    let c = check_mapping(&frames, [(0, 0x100), (1, 0x101), (2, 0x102)], |_| false);
    assert_eq!((c.instance, c.checked, c.mismatches.len()), (Some(1), 3, 0));
    // pgoff 1 is a private copy (anonymous): skipped, not a mismatch.
    let c = check_mapping(&frames, [(0, 0x200), (1, 0x999)], |pfn| pfn == 0x999);
    assert_eq!((c.instance, c.checked, c.private_copies), (Some(2), 1, 1));
    assert!(c.mismatches.is_empty());
}

#[test]
fn verify_finds_mismatches() {
    let frames = two_instances();
    // Instance 2's frame for pgoff 1 inside a mapping of instance 1: right pgoff, wrong
    // instance (matching by page offset alone would accept it).
    let c = check_mapping(&frames, [(0, 0x100), (1, 0x201)], |_| false);
    assert_eq!(c.checked, 2);
    assert_eq!(c.mismatches.len(), 1, "{:?}", c.mismatches);
    assert!(c.mismatches[0].contains("instance 2"));
    // A frame at the wrong page offset.
    let c = check_mapping(&frames, [(2, 0x101)], |_| false);
    assert_eq!(c.mismatches.len(), 1);
    // A PFN nobody owns that is not anonymous memory either.
    let c = check_mapping(&frames, [(0, 0x5000)], |_| false);
    assert_eq!((c.checked, c.mismatches.len()), (1, 1));
}

#[test]
fn kernel_pointer_scan() {
    assert_eq!(
        kernel_pointers("x 0xffff888003a4b000 ffffffffc0001234 y"),
        vec![0xffff_8880_03a4_b000, 0xffff_ffff_c000_1234]
    );
    // PFNs, physical addresses, hashed pointers, counters and long digit runs are not.
    assert!(kernel_pointers(
        "1 0 0x1a2b 0x1a2b000\nptr 00000000deadbeef\nfaults 18446744073709551615\n"
    )
    .is_empty());
    assert!(kernel_pointers("0xffff7fffffffffff").is_empty());
}

#[test]
fn latency_buckets() {
    assert_eq!(
        parse_latency("# le_ns count\n1024 5\n2048 1\n").unwrap(),
        vec![(1024, 5), (2048, 1)]
    );
    assert!(parse_latency("1024\n").is_err());
    assert!(parse_latency("1024 1 2\n").is_err());
}

#[test]
fn fdinfo_fields() {
    let text = "pos:\t0\nflags:\t02\nmnt_id:\t5\nino:\t3\ninstance:\t42\nframes:\t7\nsize_pages:\t65536\nmetadata_bytes:\t5120\n";
    assert_eq!(
        parse_fdinfo(text).unwrap(),
        FdInfo {
            instance: 42,
            frames: 7,
            size_pages: 65536,
            metadata_bytes: Some(5120),
        }
    );
    assert!(parse_fdinfo("pos:\t0\n").is_err());
    assert!(parse_fdinfo("instance:\tx\nframes:\t1\nsize_pages:\t1\n").is_err());
    assert!(parse_fdinfo("instance:\t1\nframes:\t1\n").is_err());
}

#[test]
fn pagemap_bits() {
    let e = PagemapEntry::from_raw((1 << 63) | (1 << 61) | 0x1234);
    assert!(e.present && e.file_or_shared && !e.swapped && !e.soft_dirty);
    assert_eq!(e.pfn, Some(0x1234));
    assert!(PagemapEntry::from_raw((1 << 63) | (1 << 55) | 0x1234).soft_dirty);
    assert_eq!(PagemapEntry::from_raw(0).pfn, None);
    // Swapped entries carry a swap type and offset, not a PFN.
    assert_eq!(PagemapEntry::from_raw((1 << 63) | (1 << 62) | 5).pfn, None);
}

#[test]
fn maps_ranges() {
    let line = "7f00c0000000-7f00c0200000 rw-s 00003000 00:05 7 /dev/rust_pagefault_demo";
    assert_eq!(
        parse_maps_range(line).unwrap(),
        (0x7f00c0000000, 0x7f00c0200000, 0x3000)
    );
    assert!(parse_maps_range("garbage").is_err());
    assert!(parse_maps_range("2000-1000 rw-s 0 00:05 7 /x").is_err());
    assert!(parse_maps_range("1000-2000 rw-s").is_err());
}

#[test]
fn stat_faults_with_odd_comm() {
    let text = "123 (a) b) c) S 1 123 123 0 -1 4194560 77 0 3 0 1 2 0 0 20 0 1 0 100 1000 10";
    assert_eq!(parse_stat_faults(text).unwrap(), (77, 3));
    assert!(parse_stat_faults("garbage").is_err());
    assert!(parse_stat_faults("1 (x) S 1").is_err());
    // Fields 14 and 15: utime and stime.
    assert_eq!(parse_stat_usage(text).unwrap(), (77, 1, 2));
}

#[test]
fn slabinfo_bytes_in_use_per_cache() {
    let text = "slabinfo - version: 2.1\n\
        # name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables\n\
        radix_tree_node 1000 1036 576 28 4 : tunables 0 0 0 : slabdata 37 37 0\n\
        kmalloc-64 10 64 64 64 1 : tunables 0 0 0 : slabdata 1 1 0\n";
    let caches = parse_slabinfo(text).unwrap();
    assert_eq!(caches.len(), 2);
    assert_eq!(caches["radix_tree_node"], 1000 * 576);
    assert_eq!(caches["kmalloc-64"], 10 * 64);
    assert!(parse_slabinfo("slabinfo - version: 1.1\n").is_err());
    assert!(parse_slabinfo("slabinfo - version: 2.1\nx y\n").is_err());
}

#[test]
fn meminfo_fields() {
    let text = "MemTotal:        2014692 kB\nMemFree:         1830116 kB\nSlab:   12 kB\n";
    assert_eq!(meminfo_kb(text, "MemTotal").unwrap(), 2014692);
    assert_eq!(meminfo_kb(text, "Slab").unwrap(), 12);
    // A name is the whole field: "Mem" is not "MemTotal".
    assert!(meminfo_kb(text, "Mem").is_err());
    assert!(meminfo_kb(text, "SwapTotal").is_err());
}
