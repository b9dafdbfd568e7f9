//! The perf ABI constants hvprof relies on, with their source.
//!
//! Values come from `include/uapi/linux/perf_event.h` (Linux 6.1, unchanged through 6.18) via
//! the `perf-event-open-sys` bindings where they exist; the few the bindings spell differently
//! are restated here with the header line they come from. Layouts of records are described on
//! the decoder in [`crate::record`].

use perf_event_open_sys::bindings as b;

/// `PERF_RECORD_MISC_CPUMODE_MASK` (`(7 << 0)`): the cpumode bits of `perf_event_header.misc`.
pub const MISC_CPUMODE_MASK: u16 = b::PERF_RECORD_MISC_CPUMODE_MASK as u16;
/// `PERF_RECORD_MISC_CPUMODE_UNKNOWN` (0).
pub const MISC_CPUMODE_UNKNOWN: u16 = b::PERF_RECORD_MISC_CPUMODE_UNKNOWN as u16;
/// `PERF_RECORD_MISC_KERNEL` (1): the host kernel.
pub const MISC_KERNEL: u16 = b::PERF_RECORD_MISC_KERNEL as u16;
/// `PERF_RECORD_MISC_USER` (2): host user space.
pub const MISC_USER: u16 = b::PERF_RECORD_MISC_USER as u16;
/// `PERF_RECORD_MISC_HYPERVISOR` (3): the hypervisor (Xen's own code under Xenoprof-like setups).
pub const MISC_HYPERVISOR: u16 = b::PERF_RECORD_MISC_HYPERVISOR as u16;
/// `PERF_RECORD_MISC_GUEST_KERNEL` (4): a sample taken while a vCPU ran guest kernel code;
/// the IP is a guest virtual address.
pub const MISC_GUEST_KERNEL: u16 = b::PERF_RECORD_MISC_GUEST_KERNEL as u16;
/// `PERF_RECORD_MISC_GUEST_USER` (5): a sample taken while a vCPU ran guest user code.
pub const MISC_GUEST_USER: u16 = b::PERF_RECORD_MISC_GUEST_USER as u16;
/// `PERF_RECORD_MISC_EXACT_IP` (1 << 14): the IP is exact (PEBS and similar).
pub const MISC_EXACT_IP: u16 = 1 << 14;

/// `PERF_RECORD_MMAP` (1).
pub const RECORD_MMAP: u32 = b::PERF_RECORD_MMAP;
/// `PERF_RECORD_LOST` (2): `{ header; u64 id; u64 lost; sample_id }`.
pub const RECORD_LOST: u32 = b::PERF_RECORD_LOST;
/// `PERF_RECORD_COMM` (3).
pub const RECORD_COMM: u32 = b::PERF_RECORD_COMM;
/// `PERF_RECORD_EXIT` (4): `{ header; u32 pid, ppid; u32 tid, ptid; u64 time; sample_id }`.
pub const RECORD_EXIT: u32 = b::PERF_RECORD_EXIT;
/// `PERF_RECORD_THROTTLE` (5): `{ header; u64 time; u64 id; u64 stream_id; sample_id }`.
pub const RECORD_THROTTLE: u32 = b::PERF_RECORD_THROTTLE;
/// `PERF_RECORD_UNTHROTTLE` (6): same layout as THROTTLE.
pub const RECORD_UNTHROTTLE: u32 = b::PERF_RECORD_UNTHROTTLE;
/// `PERF_RECORD_FORK` (7).
pub const RECORD_FORK: u32 = b::PERF_RECORD_FORK;
/// `PERF_RECORD_SAMPLE` (9).
pub const RECORD_SAMPLE: u32 = b::PERF_RECORD_SAMPLE;
/// `PERF_RECORD_MMAP2` (10).
pub const RECORD_MMAP2: u32 = b::PERF_RECORD_MMAP2;
/// `PERF_RECORD_SWITCH` (14).
pub const RECORD_SWITCH: u32 = b::PERF_RECORD_SWITCH;
/// `PERF_RECORD_LOST_SAMPLES` (13): `{ header; u64 lost; sample_id }`.
pub const RECORD_LOST_SAMPLES: u32 = b::PERF_RECORD_LOST_SAMPLES;

/// `PERF_SAMPLE_IP` (1 << 0).
pub const SAMPLE_IP: u64 = b::PERF_SAMPLE_IP as u64;
/// `PERF_SAMPLE_TID` (1 << 1): `u32 pid, tid`.
pub const SAMPLE_TID: u64 = b::PERF_SAMPLE_TID as u64;
/// `PERF_SAMPLE_TIME` (1 << 2): `u64 time` in ns of the event clock.
pub const SAMPLE_TIME: u64 = b::PERF_SAMPLE_TIME as u64;
/// `PERF_SAMPLE_ID` (1 << 6).
pub const SAMPLE_ID: u64 = b::PERF_SAMPLE_ID as u64;
/// `PERF_SAMPLE_CPU` (1 << 7): `u32 cpu, res`.
pub const SAMPLE_CPU: u64 = b::PERF_SAMPLE_CPU as u64;
/// `PERF_SAMPLE_PERIOD` (1 << 8): `u64 period`, in events (ns for cpu-clock).
pub const SAMPLE_PERIOD: u64 = b::PERF_SAMPLE_PERIOD as u64;
/// `PERF_SAMPLE_STREAM_ID` (1 << 9).
pub const SAMPLE_STREAM_ID: u64 = b::PERF_SAMPLE_STREAM_ID as u64;
/// `PERF_SAMPLE_IDENTIFIER` (1 << 16).
pub const SAMPLE_IDENTIFIER: u64 = b::PERF_SAMPLE_IDENTIFIER as u64;

/// The sample_type hvprof always requests: `IP | TID | TIME | CPU | PERIOD`.
///
/// Record body of a PERF_RECORD_SAMPLE in this order (perf_event.h, "struct {...} && PERF_RECORD_SAMPLE"):
/// `u64 ip; u32 pid, tid; u64 time; u32 cpu, res; u64 period` = 40 bytes after the 8-byte header.
pub const HVPROF_SAMPLE_TYPE: u64 =
    SAMPLE_IP | SAMPLE_TID | SAMPLE_TIME | SAMPLE_CPU | SAMPLE_PERIOD;

/// Size in bytes of `struct perf_event_header` (`u32 type; u16 misc; u16 size`).
pub const HEADER_SIZE: usize = 8;

/// `PERF_TYPE_HARDWARE` (0).
pub const TYPE_HARDWARE: u32 = b::PERF_TYPE_HARDWARE;
/// `PERF_TYPE_SOFTWARE` (1).
pub const TYPE_SOFTWARE: u32 = b::PERF_TYPE_SOFTWARE;
/// `PERF_TYPE_TRACEPOINT` (2).
pub const TYPE_TRACEPOINT: u32 = b::PERF_TYPE_TRACEPOINT;

/// Hardware event configs (`enum perf_hw_id`).
pub mod hw {
    use perf_event_open_sys::bindings as b;
    /// `PERF_COUNT_HW_CPU_CYCLES`.
    pub const CPU_CYCLES: u64 = b::PERF_COUNT_HW_CPU_CYCLES as u64;
    /// `PERF_COUNT_HW_INSTRUCTIONS`.
    pub const INSTRUCTIONS: u64 = b::PERF_COUNT_HW_INSTRUCTIONS as u64;
    /// `PERF_COUNT_HW_CACHE_REFERENCES`.
    pub const CACHE_REFERENCES: u64 = b::PERF_COUNT_HW_CACHE_REFERENCES as u64;
    /// `PERF_COUNT_HW_CACHE_MISSES`.
    pub const CACHE_MISSES: u64 = b::PERF_COUNT_HW_CACHE_MISSES as u64;
    /// `PERF_COUNT_HW_BRANCH_INSTRUCTIONS`.
    pub const BRANCH_INSTRUCTIONS: u64 = b::PERF_COUNT_HW_BRANCH_INSTRUCTIONS as u64;
    /// `PERF_COUNT_HW_BRANCH_MISSES`.
    pub const BRANCH_MISSES: u64 = b::PERF_COUNT_HW_BRANCH_MISSES as u64;
    /// `PERF_COUNT_HW_BUS_CYCLES`.
    pub const BUS_CYCLES: u64 = b::PERF_COUNT_HW_BUS_CYCLES as u64;
    /// `PERF_COUNT_HW_REF_CPU_CYCLES`.
    pub const REF_CPU_CYCLES: u64 = b::PERF_COUNT_HW_REF_CPU_CYCLES as u64;
}

/// Software event configs (`enum perf_sw_ids`).
pub mod sw {
    use perf_event_open_sys::bindings as b;
    /// `PERF_COUNT_SW_CPU_CLOCK`: an hrtimer per CPU; period in ns.
    pub const CPU_CLOCK: u64 = b::PERF_COUNT_SW_CPU_CLOCK as u64;
    /// `PERF_COUNT_SW_TASK_CLOCK`: the task's own clock; period in ns.
    pub const TASK_CLOCK: u64 = b::PERF_COUNT_SW_TASK_CLOCK as u64;
    /// `PERF_COUNT_SW_PAGE_FAULTS`.
    pub const PAGE_FAULTS: u64 = b::PERF_COUNT_SW_PAGE_FAULTS as u64;
    /// `PERF_COUNT_SW_CONTEXT_SWITCHES`.
    pub const CONTEXT_SWITCHES: u64 = b::PERF_COUNT_SW_CONTEXT_SWITCHES as u64;
    /// `PERF_COUNT_SW_CPU_MIGRATIONS`.
    pub const CPU_MIGRATIONS: u64 = b::PERF_COUNT_SW_CPU_MIGRATIONS as u64;
    /// `PERF_COUNT_SW_DUMMY`: counts nothing; carries sideband records.
    pub const DUMMY: u64 = b::PERF_COUNT_SW_DUMMY as u64;
}

/// Byte offset of `data_head` in `struct perf_event_mmap_page` (after 1024 bytes of header
/// fields and reserved space; perf_event.h places it at the start of the second KiB).
pub const MMAP_PAGE_DATA_HEAD: usize = std::mem::offset_of!(b::perf_event_mmap_page, data_head);
/// Byte offset of `data_tail`.
pub const MMAP_PAGE_DATA_TAIL: usize = std::mem::offset_of!(b::perf_event_mmap_page, data_tail);
/// Byte offset of `data_offset` (since Linux 4.1).
pub const MMAP_PAGE_DATA_OFFSET: usize = std::mem::offset_of!(b::perf_event_mmap_page, data_offset);
/// Byte offset of `data_size` (since Linux 4.1).
pub const MMAP_PAGE_DATA_SIZE: usize = std::mem::offset_of!(b::perf_event_mmap_page, data_size);

const _: () = assert!(MMAP_PAGE_DATA_HEAD == 1024);
const _: () = assert!(MMAP_PAGE_DATA_TAIL == 1032);
const _: () = assert!(MMAP_PAGE_DATA_OFFSET == 1040);
const _: () = assert!(MMAP_PAGE_DATA_SIZE == 1048);
const _: () = assert!(MISC_GUEST_KERNEL == 4 && MISC_GUEST_USER == 5 && MISC_CPUMODE_MASK == 7);
const _: () = assert!(RECORD_SAMPLE == 9 && RECORD_LOST == 2 && RECORD_THROTTLE == 5);
