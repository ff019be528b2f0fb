//! Paired check that the storage seam costs nothing measurable: writes the same blocks to
//! the same file through `std::fs::File` and through `FileSystem`'s `Arc<dyn StorageFile>`,
//! and maps and reads a file through `memmap2` and through `StorageFile::map`, alternating
//! the two sides on every iteration (and which goes first), so a burst of disk or CPU
//! contention lands on both alike. Prints each side's median, their ratio, and the median
//! of the per-pair ratios (steadier when fsync latency jumps between modes).
//! Complements the criterion group `storage_seam` in `benches/micro.rs`, whose sides run one
//! after the other and so differ by whatever the disk did in between.
//!
//! ```text
//! cargo run --release --example storage_seam_paired            # 2000 fdatasync pairs per size
//! cargo run --release --example storage_seam_paired -- 500     # fewer
//! ```

use std::error::Error;
use std::fs::File;
use std::hint::black_box;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use chronicle::storage::{FileSystem, OpenMode, Storage, StorageFile};

/// Size of the file the writes cycle through (written and synced first, so every fdatasync
/// flushes data only).
const FILE_BYTES: u64 = 1 << 20;
/// Pairs per size without fsync, per pair with fsync.
const UNSYNCED_PAIRS_PER_SYNCED: usize = 50;
/// Map-and-read pairs per size, per pair with fsync.
const MAP_PAIRS_PER_SYNCED: usize = 5;

fn median_us(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Runs `operation` once; its duration in microseconds.
fn timed_us(operation: impl FnOnce() -> io::Result<()>) -> io::Result<f64> {
    let started = Instant::now();
    operation()?;
    Ok(started.elapsed().as_secs_f64() * 1e6)
}

fn main() -> Result<(), Box<dyn Error>> {
    let synced_pairs: usize = std::env::args().nth(1).map(|arg| arg.parse()).transpose()?.unwrap_or(2000);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("writes");
    std::fs::write(&path, vec![0u8; FILE_BYTES as usize])?;
    File::open(&path)?.sync_all()?;
    let std_file = File::options().read(true).write(true).open(&path)?;
    // The seam held as the engine holds it: trait objects chosen at run time.
    let storage: Arc<dyn Storage> = black_box(Arc::new(FileSystem));
    let seam_file: Arc<dyn StorageFile> = black_box(storage.open(&path, OpenMode::ReadWrite)?);
    println!("| operation | pairs | median std | median seam | ratio of medians | median of pair ratios |");
    println!("|---|---:|---:|---:|---:|---:|");
    for sync in [true, false] {
        for block_bytes in [4096u64, 65536] {
            let block = vec![0x5au8; block_bytes as usize];
            let pairs = if sync { synced_pairs } else { synced_pairs * UNSYNCED_PAIRS_PER_SYNCED };
            let mut samples_us = [Vec::with_capacity(pairs), Vec::with_capacity(pairs)];
            let mut offset = 0u64;
            for pair in 0..pairs {
                let first = pair % 2;
                for side in [first, 1 - first] {
                    let buf = black_box(&block[..]);
                    let elapsed_us = if side == 0 {
                        timed_us(|| {
                            std_file.write_all_at(buf, offset)?;
                            if sync { std_file.sync_data() } else { Ok(()) }
                        })?
                    } else {
                        timed_us(|| {
                            seam_file.write_all_at(buf, offset)?;
                            if sync { seam_file.sync_data() } else { Ok(()) }
                        })?
                    };
                    samples_us[side].push(elapsed_us);
                    offset = (offset + block_bytes) % FILE_BYTES;
                }
            }
            let operation = if sync { "write + fdatasync" } else { "write" };
            print_row(&format!("{operation} {} KiB", block_bytes / 1024), &mut samples_us);
        }
    }
    for (label, file_bytes) in [("64 KiB", 65536u64), ("1 MiB", 1 << 20)] {
        let path = dir.path().join(format!("map-{file_bytes}"));
        std::fs::write(&path, (0..file_bytes).map(|i| (i * 13) as u8).collect::<Vec<u8>>())?;
        let std_file = File::open(&path)?;
        let seam_file: Arc<dyn StorageFile> = black_box(storage.open(&path, OpenMode::Read)?);
        let pairs = synced_pairs * MAP_PAIRS_PER_SYNCED;
        let mut samples_us = [Vec::with_capacity(pairs), Vec::with_capacity(pairs)];
        for pair in 0..pairs {
            let first = pair % 2;
            for side in [first, 1 - first] {
                let elapsed_us = if side == 0 {
                    timed_us(|| {
                        map_directly(&std_file, file_bytes).map(|map| {
                            black_box(crc32fast::hash(&map));
                        })
                    })?
                } else {
                    timed_us(|| {
                        map_via_seam(&*seam_file, file_bytes).map(|map| {
                            black_box(crc32fast::hash(&map));
                        })
                    })?
                };
                samples_us[side].push(elapsed_us);
            }
        }
        print_row(&format!("map + read (CRC-32) {label}, std side: memmap2"), &mut samples_us);
    }
    Ok(())
}

fn print_row(operation: &str, samples_us: &mut [Vec<f64>; 2]) {
    let [std_us, seam_us] = samples_us;
    let pairs = std_us.len();
    // Each pair ran back to back: its ratio cancels what the disk did in between pairs.
    let mut pair_ratios: Vec<f64> = std_us.iter().zip(seam_us.iter()).map(|(std, seam)| seam / std).collect();
    let (std_median_us, seam_median_us) = (median_us(std_us), median_us(seam_us));
    println!(
        "| {operation} | {pairs} | {std_median_us:.2} µs | {seam_median_us:.2} µs | {:.3} | {:.3} |",
        seam_median_us / std_median_us,
        median_us(&mut pair_ratios)
    );
}

/// `memmap2` called as `StorageFile::map` of `FileSystem` calls it.
/// `StorageFile::map` of the seam.
#[allow(unsafe_code)]
fn map_via_seam(file: &dyn StorageFile, len: u64) -> io::Result<bytes::Bytes> {
    // SAFETY: a private temporary file, mapped no longer than its length, that nothing writes
    // or truncates while it is mapped.
    unsafe { file.map(len) }
}

#[allow(unsafe_code)]
fn map_directly(file: &File, len: u64) -> io::Result<memmap2::Mmap> {
    // SAFETY: a private temporary file that nothing writes or truncates while it is mapped.
    unsafe { memmap2::MmapOptions::new().len(len as usize).map(file) }
}
