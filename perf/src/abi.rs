//! The perf ABI hvprof relies on, with its source, and a builder for `perf_event_attr`.
//!
//! Values come from `include/uapi/linux/perf_event.h` (Linux 6.1, unchanged through 6.18) via
//! the `perf-event-open-sys` bindings where they exist; the few the bindings spell differently
//! are restated with the header line they come from. Record layouts are described on
//! [`crate::record`].

use perf_event_open_sys::bindings as b;
pub use perf_event_open_sys::bindings::perf_event_attr;

/// Size in bytes of `struct perf_event_header` (`u32 type; u16 misc; u16 size`).
pub const HEADER_SIZE: usize = 8;

/// `PERF_ATTR_SIZE_VER0` (64): the first published `perf_event_attr`, the smallest a file may hold.
pub const PERF_ATTR_SIZE_VER0: u32 = 64;

// ---- perf_event_header.misc -------------------------------------------------------------------

/// `PERF_RECORD_MISC_CPUMODE_MASK` (`(7 << 0)`): the cpumode bits of `perf_event_header.misc`.
pub const MISC_CPUMODE_MASK: u16 = b::PERF_RECORD_MISC_CPUMODE_MASK as u16;
/// `PERF_RECORD_MISC_CPUMODE_UNKNOWN` (0).
pub const MISC_CPUMODE_UNKNOWN: u16 = b::PERF_RECORD_MISC_CPUMODE_UNKNOWN as u16;
/// `PERF_RECORD_MISC_KERNEL` (1): the host kernel.
pub const MISC_KERNEL: u16 = b::PERF_RECORD_MISC_KERNEL as u16;
/// `PERF_RECORD_MISC_USER` (2): host user space.
pub const MISC_USER: u16 = b::PERF_RECORD_MISC_USER as u16;
/// `PERF_RECORD_MISC_HYPERVISOR` (3): the hypervisor below the kernel (Xen).
pub const MISC_HYPERVISOR: u16 = b::PERF_RECORD_MISC_HYPERVISOR as u16;
/// `PERF_RECORD_MISC_GUEST_KERNEL` (4): a vCPU ran guest kernel code; the IP is a guest VA.
pub const MISC_GUEST_KERNEL: u16 = b::PERF_RECORD_MISC_GUEST_KERNEL as u16;
/// `PERF_RECORD_MISC_GUEST_USER` (5): a vCPU ran guest user code; the IP is a guest VA.
pub const MISC_GUEST_USER: u16 = b::PERF_RECORD_MISC_GUEST_USER as u16;
/// `PERF_RECORD_MISC_MMAP_DATA` (1 << 13), on MMAP/MMAP2: a non-executable mapping.
pub const MISC_MMAP_DATA: u16 = 1 << 13;
/// `PERF_RECORD_MISC_COMM_EXEC` (1 << 13), on COMM: the name changed by exec.
pub const MISC_COMM_EXEC: u16 = 1 << 13;
/// `PERF_RECORD_MISC_SWITCH_OUT` (1 << 13), on SWITCH records: the task switched out.
pub const MISC_SWITCH_OUT: u16 = 1 << 13;
/// `PERF_RECORD_MISC_EXACT_IP` (1 << 14), on SAMPLE: the IP is exact (PEBS and similar).
pub const MISC_EXACT_IP: u16 = 1 << 14;
/// `PERF_RECORD_MISC_SWITCH_OUT_PREEMPT` (1 << 14), on SWITCH: switched out while runnable.
pub const MISC_SWITCH_OUT_PREEMPT: u16 = 1 << 14;
/// `PERF_RECORD_MISC_MMAP_BUILD_ID` (1 << 14), on MMAP2 (Linux ≥ 5.12): the record carries a
/// build-id instead of device and inode numbers.
pub const MISC_MMAP_BUILD_ID: u16 = 1 << 14;

// ---- enum perf_event_type ---------------------------------------------------------------------

/// `PERF_RECORD_MMAP` (1): `u32 pid, tid; u64 addr, len, pgoff; char filename[]; sample_id`.
pub const RECORD_MMAP: u32 = b::PERF_RECORD_MMAP;
/// `PERF_RECORD_LOST` (2): `u64 id; u64 lost; sample_id`.
pub const RECORD_LOST: u32 = b::PERF_RECORD_LOST;
/// `PERF_RECORD_COMM` (3): `u32 pid, tid; char comm[]; sample_id`.
pub const RECORD_COMM: u32 = b::PERF_RECORD_COMM;
/// `PERF_RECORD_EXIT` (4): `u32 pid, ppid; u32 tid, ptid; u64 time; sample_id`.
pub const RECORD_EXIT: u32 = b::PERF_RECORD_EXIT;
/// `PERF_RECORD_THROTTLE` (5): `u64 time; u64 id; u64 stream_id; sample_id`.
pub const RECORD_THROTTLE: u32 = b::PERF_RECORD_THROTTLE;
/// `PERF_RECORD_UNTHROTTLE` (6): same layout as THROTTLE.
pub const RECORD_UNTHROTTLE: u32 = b::PERF_RECORD_UNTHROTTLE;
/// `PERF_RECORD_FORK` (7): same layout as EXIT.
pub const RECORD_FORK: u32 = b::PERF_RECORD_FORK;
/// `PERF_RECORD_READ` (8).
pub const RECORD_READ: u32 = b::PERF_RECORD_READ;
/// `PERF_RECORD_SAMPLE` (9): see [`crate::record`].
pub const RECORD_SAMPLE: u32 = b::PERF_RECORD_SAMPLE;
/// `PERF_RECORD_MMAP2` (10): MMAP plus `u32 maj, min; u64 ino, ino_generation` (or, with
/// [`MISC_MMAP_BUILD_ID`], `u8 build_id_size, reserved[3]; u8 build_id[20]`), `u32 prot, flags`.
pub const RECORD_MMAP2: u32 = b::PERF_RECORD_MMAP2;
/// `PERF_RECORD_LOST_SAMPLES` (13): `u64 lost; sample_id`.
pub const RECORD_LOST_SAMPLES: u32 = b::PERF_RECORD_LOST_SAMPLES;
/// `PERF_RECORD_SWITCH` (14): `sample_id` only.
pub const RECORD_SWITCH: u32 = b::PERF_RECORD_SWITCH;
/// `PERF_RECORD_SWITCH_CPU_WIDE` (15): `u32 next_prev_pid, next_prev_tid; sample_id`.
pub const RECORD_SWITCH_CPU_WIDE: u32 = b::PERF_RECORD_SWITCH_CPU_WIDE;
/// `PERF_RECORD_KSYMBOL` (17): `u64 addr; u32 len; u16 ksym_type, flags; char name[]; sample_id`.
pub const RECORD_KSYMBOL: u32 = b::PERF_RECORD_KSYMBOL;

// ---- enum perf_event_sample_format ------------------------------------------------------------

/// `PERF_SAMPLE_IP` (1 << 0).
pub const SAMPLE_IP: u64 = b::PERF_SAMPLE_IP as u64;
/// `PERF_SAMPLE_TID` (1 << 1): `u32 pid, tid`.
pub const SAMPLE_TID: u64 = b::PERF_SAMPLE_TID as u64;
/// `PERF_SAMPLE_TIME` (1 << 2): `u64 time` in ns of the event clock.
pub const SAMPLE_TIME: u64 = b::PERF_SAMPLE_TIME as u64;
/// `PERF_SAMPLE_ADDR` (1 << 3).
pub const SAMPLE_ADDR: u64 = b::PERF_SAMPLE_ADDR as u64;
/// `PERF_SAMPLE_READ` (1 << 4): a `struct read_format` (see `attr.read_format`).
pub const SAMPLE_READ: u64 = b::PERF_SAMPLE_READ as u64;
/// `PERF_SAMPLE_CALLCHAIN` (1 << 5): `u64 nr; u64 ips[nr]` with `PERF_CONTEXT_*` markers.
pub const SAMPLE_CALLCHAIN: u64 = b::PERF_SAMPLE_CALLCHAIN as u64;
/// `PERF_SAMPLE_ID` (1 << 6).
pub const SAMPLE_ID: u64 = b::PERF_SAMPLE_ID as u64;
/// `PERF_SAMPLE_CPU` (1 << 7): `u32 cpu, res`.
pub const SAMPLE_CPU: u64 = b::PERF_SAMPLE_CPU as u64;
/// `PERF_SAMPLE_PERIOD` (1 << 8): `u64 period`, in events (ns for cpu-clock).
pub const SAMPLE_PERIOD: u64 = b::PERF_SAMPLE_PERIOD as u64;
/// `PERF_SAMPLE_STREAM_ID` (1 << 9).
pub const SAMPLE_STREAM_ID: u64 = b::PERF_SAMPLE_STREAM_ID as u64;
/// `PERF_SAMPLE_RAW` (1 << 10): `u32 size; char data[size]` (tracepoint records).
pub const SAMPLE_RAW: u64 = b::PERF_SAMPLE_RAW as u64;
/// `PERF_SAMPLE_BRANCH_STACK` (1 << 11).
pub const SAMPLE_BRANCH_STACK: u64 = b::PERF_SAMPLE_BRANCH_STACK as u64;
/// `PERF_SAMPLE_REGS_USER` (1 << 12): `u64 abi; u64 regs[weight(sample_regs_user)]`.
pub const SAMPLE_REGS_USER: u64 = b::PERF_SAMPLE_REGS_USER as u64;
/// `PERF_SAMPLE_STACK_USER` (1 << 13): `u64 size; char data[size]; u64 dyn_size`.
pub const SAMPLE_STACK_USER: u64 = b::PERF_SAMPLE_STACK_USER as u64;
/// `PERF_SAMPLE_WEIGHT` (1 << 14).
pub const SAMPLE_WEIGHT: u64 = b::PERF_SAMPLE_WEIGHT as u64;
/// `PERF_SAMPLE_DATA_SRC` (1 << 15).
pub const SAMPLE_DATA_SRC: u64 = b::PERF_SAMPLE_DATA_SRC as u64;
/// `PERF_SAMPLE_IDENTIFIER` (1 << 16): `u64 id`, first in SAMPLE and last in `sample_id`.
pub const SAMPLE_IDENTIFIER: u64 = b::PERF_SAMPLE_IDENTIFIER as u64;
/// `PERF_SAMPLE_TRANSACTION` (1 << 17).
pub const SAMPLE_TRANSACTION: u64 = b::PERF_SAMPLE_TRANSACTION as u64;
/// `PERF_SAMPLE_REGS_INTR` (1 << 18): like REGS_USER, with `sample_regs_intr`.
pub const SAMPLE_REGS_INTR: u64 = b::PERF_SAMPLE_REGS_INTR as u64;
/// `PERF_SAMPLE_PHYS_ADDR` (1 << 19).
pub const SAMPLE_PHYS_ADDR: u64 = b::PERF_SAMPLE_PHYS_ADDR as u64;
/// `PERF_SAMPLE_AUX` (1 << 20): `u64 size; char data[size]`.
pub const SAMPLE_AUX: u64 = 1 << 20;
/// `PERF_SAMPLE_CGROUP` (1 << 21).
pub const SAMPLE_CGROUP: u64 = 1 << 21;
/// `PERF_SAMPLE_DATA_PAGE_SIZE` (1 << 22).
pub const SAMPLE_DATA_PAGE_SIZE: u64 = 1 << 22;
/// `PERF_SAMPLE_CODE_PAGE_SIZE` (1 << 23).
pub const SAMPLE_CODE_PAGE_SIZE: u64 = 1 << 23;
/// `PERF_SAMPLE_WEIGHT_STRUCT` (1 << 24).
pub const SAMPLE_WEIGHT_STRUCT: u64 = 1 << 24;
/// Every sample_type bit the decoder understands (`PERF_SAMPLE_MAX` is 1 << 25 in 6.18).
pub const SAMPLE_KNOWN: u64 = (1 << 25) - 1;

/// The sample_type hvprof requests for profiling: `IP | TID | TIME | CPU | PERIOD`.
///
/// Record body of a PERF_RECORD_SAMPLE in this order (perf_event.h, `PERF_RECORD_SAMPLE`):
/// `u64 ip; u32 pid, tid; u64 time; u32 cpu, res; u64 period` = 40 bytes after the header.
pub const HVPROF_SAMPLE_TYPE: u64 =
    SAMPLE_IP | SAMPLE_TID | SAMPLE_TIME | SAMPLE_CPU | SAMPLE_PERIOD;

// ---- read_format, callchain contexts, regs ABI ------------------------------------------------

/// `PERF_FORMAT_TOTAL_TIME_ENABLED` (1 << 0).
pub const FORMAT_TOTAL_TIME_ENABLED: u64 = b::PERF_FORMAT_TOTAL_TIME_ENABLED as u64;
/// `PERF_FORMAT_TOTAL_TIME_RUNNING` (1 << 1).
pub const FORMAT_TOTAL_TIME_RUNNING: u64 = b::PERF_FORMAT_TOTAL_TIME_RUNNING as u64;
/// `PERF_FORMAT_ID` (1 << 2).
pub const FORMAT_ID: u64 = b::PERF_FORMAT_ID as u64;
/// `PERF_FORMAT_GROUP` (1 << 3).
pub const FORMAT_GROUP: u64 = b::PERF_FORMAT_GROUP as u64;
/// `PERF_FORMAT_LOST` (1 << 4, Linux ≥ 6.0).
pub const FORMAT_LOST: u64 = 1 << 4;

/// `PERF_CONTEXT_HV` (`(__u64)-32`): the following callchain entries are hypervisor IPs.
pub const CONTEXT_HV: u64 = (-32i64) as u64;
/// `PERF_CONTEXT_KERNEL` (`(__u64)-128`).
pub const CONTEXT_KERNEL: u64 = (-128i64) as u64;
/// `PERF_CONTEXT_USER` (`(__u64)-512`).
pub const CONTEXT_USER: u64 = (-512i64) as u64;
/// `PERF_CONTEXT_GUEST` (`(__u64)-2048`).
pub const CONTEXT_GUEST: u64 = (-2048i64) as u64;
/// `PERF_CONTEXT_GUEST_KERNEL` (`(__u64)-2176`).
pub const CONTEXT_GUEST_KERNEL: u64 = (-2176i64) as u64;
/// `PERF_CONTEXT_GUEST_USER` (`(__u64)-2560`).
pub const CONTEXT_GUEST_USER: u64 = (-2560i64) as u64;
/// `PERF_CONTEXT_MAX` (`(__u64)-4095`): callchain values at or above this are markers.
pub const CONTEXT_MAX: u64 = (-4095i64) as u64;

/// `PERF_SAMPLE_REGS_ABI_NONE` (0): no registers follow (e.g. a kernel thread).
pub const REGS_ABI_NONE: u64 = 0;
/// `PERF_SAMPLE_REGS_ABI_64` (2).
pub const REGS_ABI_64: u64 = 2;

// ---- attr types and configs -------------------------------------------------------------------

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

// ---- struct perf_event_mmap_page --------------------------------------------------------------

/// Byte offset of `lock` (the seqlock of the clock fields).
pub const MMAP_PAGE_LOCK: usize = std::mem::offset_of!(b::perf_event_mmap_page, lock);
/// Byte offset of the capabilities word (`cap_user_time` is bit 3, `cap_user_time_zero` bit 4,
/// `cap_user_time_short` bit 5).
pub const MMAP_PAGE_CAPS: usize = std::mem::offset_of!(b::perf_event_mmap_page, __bindgen_anon_1);
/// Byte offset of `time_shift` (u16).
pub const MMAP_PAGE_TIME_SHIFT: usize = std::mem::offset_of!(b::perf_event_mmap_page, time_shift);
/// Byte offset of `time_mult` (u32).
pub const MMAP_PAGE_TIME_MULT: usize = std::mem::offset_of!(b::perf_event_mmap_page, time_mult);
/// Byte offset of `time_zero` (u64).
pub const MMAP_PAGE_TIME_ZERO: usize = std::mem::offset_of!(b::perf_event_mmap_page, time_zero);
/// Byte offset of `time_cycles` (u64).
pub const MMAP_PAGE_TIME_CYCLES: usize = std::mem::offset_of!(b::perf_event_mmap_page, time_cycles);
/// Byte offset of `time_mask` (u64).
pub const MMAP_PAGE_TIME_MASK: usize = std::mem::offset_of!(b::perf_event_mmap_page, time_mask);
/// Byte offset of `data_head` (the start of the page's second KiB).
pub const MMAP_PAGE_DATA_HEAD: usize = std::mem::offset_of!(b::perf_event_mmap_page, data_head);
/// Byte offset of `data_tail`.
pub const MMAP_PAGE_DATA_TAIL: usize = std::mem::offset_of!(b::perf_event_mmap_page, data_tail);
/// Byte offset of `data_offset` (since Linux 4.1).
pub const MMAP_PAGE_DATA_OFFSET: usize = std::mem::offset_of!(b::perf_event_mmap_page, data_offset);
/// Byte offset of `data_size` (since Linux 4.1).
pub const MMAP_PAGE_DATA_SIZE: usize = std::mem::offset_of!(b::perf_event_mmap_page, data_size);

const _: () = assert!(MMAP_PAGE_DATA_HEAD == 1024 && MMAP_PAGE_DATA_TAIL == 1032);
const _: () = assert!(MMAP_PAGE_DATA_OFFSET == 1040 && MMAP_PAGE_DATA_SIZE == 1048);
const _: () = assert!(MMAP_PAGE_LOCK == 8 && MMAP_PAGE_CAPS == 40 && MMAP_PAGE_TIME_SHIFT == 50);
const _: () = assert!(MMAP_PAGE_TIME_MULT == 52 && MMAP_PAGE_TIME_ZERO == 64);
const _: () = assert!(MMAP_PAGE_TIME_CYCLES == 80 && MMAP_PAGE_TIME_MASK == 88);
const _: () = assert!(MISC_GUEST_KERNEL == 4 && MISC_GUEST_USER == 5 && MISC_CPUMODE_MASK == 7);
const _: () = assert!(RECORD_SAMPLE == 9 && RECORD_LOST == 2 && RECORD_THROTTLE == 5);
const _: () = assert!(RECORD_SWITCH_CPU_WIDE == 15 && RECORD_KSYMBOL == 17);
const _: () = assert!(SAMPLE_IDENTIFIER == 1 << 16 && SAMPLE_WEIGHT_STRUCT == 1 << 24);

// ---- attr builder -----------------------------------------------------------------------------

/// Builds a `perf_event_attr` (perf_event_open(2), "The perf_event_attr structure") by name
/// rather than by bitfield setter. Starts zeroed (every flag off, counting enabled modes all).
///
/// ```
/// use hvprof_perf::abi::{self, AttrBuilder};
/// let a = AttrBuilder::new(abi::TYPE_SOFTWARE, abi::sw::CPU_CLOCK)
///     .frequency(1000)
///     .sample_type(abi::HVPROF_SAMPLE_TYPE)
///     .disabled(true)
///     .build();
/// assert_eq!(a.freq(), 1);
/// ```
#[derive(Clone, Copy)]
pub struct AttrBuilder {
    attr: perf_event_attr,
}

impl std::fmt::Debug for AttrBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttrBuilder")
            .field("type", &self.attr.type_)
            .field("config", &self.attr.config)
            .field("sample_type", &self.attr.sample_type)
            .finish_non_exhaustive()
    }
}

macro_rules! flag {
    ($(#[$doc:meta])* $name:ident => $setter:ident) => {
        $(#[$doc])*
        pub fn $name(mut self, on: bool) -> Self {
            self.attr.$setter(u64::from(on));
            self
        }
    };
}

impl AttrBuilder {
    /// An attr for event `type_` (`PERF_TYPE_*`) and `config`, everything else zero.
    pub fn new(type_: u32, config: u64) -> AttrBuilder {
        let attr = perf_event_attr {
            type_,
            config,
            size: std::mem::size_of::<perf_event_attr>() as u32,
            ..perf_event_attr::default()
        };
        AttrBuilder { attr }
    }

    /// `sample_freq` with `freq = 1`: the kernel adapts the period to `hz` samples per second.
    pub fn frequency(mut self, hz: u64) -> Self {
        self.attr.set_freq(1);
        self.attr.__bindgen_anon_1.sample_freq = hz;
        self
    }

    /// `sample_period` with `freq = 0`: one sample every `events` events (ns for the clocks).
    pub fn period(mut self, events: u64) -> Self {
        self.attr.set_freq(0);
        self.attr.__bindgen_anon_1.sample_period = events;
        self
    }

    /// `sample_type` (`PERF_SAMPLE_*` bits).
    pub fn sample_type(mut self, bits: u64) -> Self {
        self.attr.sample_type = bits;
        self
    }

    /// `read_format` (`PERF_FORMAT_*` bits).
    pub fn read_format(mut self, bits: u64) -> Self {
        self.attr.read_format = bits;
        self
    }

    /// `wakeup_watermark` (with `watermark = 1`): wake poll(2) when this many bytes are pending.
    pub fn wakeup_bytes(mut self, bytes: u32) -> Self {
        self.attr.set_watermark(1);
        self.attr.__bindgen_anon_2.wakeup_watermark = bytes.max(1);
        self
    }

    /// `wakeup_events` (with `watermark = 0`): wake poll(2) every `n` samples.
    pub fn wakeup_events(mut self, n: u32) -> Self {
        self.attr.set_watermark(0);
        self.attr.__bindgen_anon_2.wakeup_events = n;
        self
    }

    /// `use_clockid = 1` and `clockid` (e.g. `libc::CLOCK_MONOTONIC`) for sample times.
    pub fn clockid(mut self, clock: libc::clockid_t) -> Self {
        self.attr.set_use_clockid(1);
        self.attr.clockid = clock;
        self
    }

    /// `sample_regs_user`: the user registers `PERF_SAMPLE_REGS_USER` dumps (a bit per
    /// `enum perf_event_x86_regs` index, arch/x86/include/uapi/asm/perf_regs.h).
    pub fn sample_regs_user(mut self, mask: u64) -> Self {
        self.attr.sample_regs_user = mask;
        self
    }

    /// `sample_stack_user`: bytes of user stack `PERF_SAMPLE_STACK_USER` copies (8-aligned).
    pub fn sample_stack_user(mut self, bytes: u32) -> Self {
        self.attr.sample_stack_user = bytes;
        self
    }

    flag!(
        /// `disabled`: open the event stopped (enable with `PERF_EVENT_IOC_ENABLE`).
        disabled => set_disabled);
    flag!(
        /// `sample_id_all`: append `struct sample_id` to non-sample records.
        sample_id_all => set_sample_id_all);
    flag!(
        /// `task`: FORK and EXIT records.
        task => set_task);
    flag!(
        /// `comm`: COMM records.
        comm => set_comm);
    flag!(
        /// `comm_exec`: flag COMM records caused by exec (`PERF_RECORD_MISC_COMM_EXEC`).
        comm_exec => set_comm_exec);
    flag!(
        /// `mmap`: MMAP records for executable mappings.
        mmap => set_mmap);
    flag!(
        /// `mmap2`: MMAP2 instead of MMAP records.
        mmap2 => set_mmap2);
    flag!(
        /// `mmap_data`: also MMAP records for non-executable mappings.
        mmap_data => set_mmap_data);
    flag!(
        /// `build_id`: MMAP2 carries build-ids (Linux ≥ 5.12).
        build_id => set_build_id);
    flag!(
        /// `context_switch`: SWITCH / SWITCH_CPU_WIDE records.
        context_switch => set_context_switch);
    flag!(
        /// `ksymbol`: KSYMBOL records (BPF and other JIT'ed kernel code).
        ksymbol => set_ksymbol);
    flag!(
        /// `exclude_user`: do not count host user mode.
        exclude_user => set_exclude_user);
    flag!(
        /// `exclude_kernel`: do not count host kernel mode.
        exclude_kernel => set_exclude_kernel);
    flag!(
        /// `exclude_hv`: do not count hypervisor mode.
        exclude_hv => set_exclude_hv);
    flag!(
        /// `exclude_guest`: do not count while a vCPU runs guest code (perf's default is 1).
        exclude_guest => set_exclude_guest);
    flag!(
        /// `exclude_host`: count only while a vCPU runs guest code.
        exclude_host => set_exclude_host);
    flag!(
        /// `exclude_callchain_kernel`: no kernel entries in callchains.
        exclude_callchain_kernel => set_exclude_callchain_kernel);
    flag!(
        /// `exclude_callchain_user`: no user entries in callchains.
        exclude_callchain_user => set_exclude_callchain_user);

    /// The finished attr (`size` set to this struct's size).
    pub fn build(self) -> perf_event_attr {
        self.attr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_sets_the_named_fields() {
        let a = AttrBuilder::new(TYPE_TRACEPOINT, 42)
            .period(1)
            .sample_type(SAMPLE_TID | SAMPLE_RAW)
            .clockid(libc::CLOCK_MONOTONIC)
            .disabled(true)
            .sample_id_all(true)
            .exclude_guest(true)
            .wakeup_bytes(0)
            .build();
        assert_eq!(
            (a.type_, a.config, a.sample_type),
            (TYPE_TRACEPOINT, 42, SAMPLE_TID | SAMPLE_RAW)
        );
        // SAFETY: both union members are plain u64s; `period` wrote this one.
        let period = unsafe { a.__bindgen_anon_1.sample_period };
        assert_eq!(period, 1);
        assert_eq!(
            (a.freq(), a.disabled(), a.sample_id_all(), a.exclude_guest()),
            (0, 1, 1, 1)
        );
        assert_eq!(
            (a.use_clockid(), a.clockid, a.watermark()),
            (1, libc::CLOCK_MONOTONIC, 1)
        );
        // SAFETY: both union members are plain u32s; `wakeup_bytes` wrote this one.
        let mark = unsafe { a.__bindgen_anon_2.wakeup_watermark };
        assert_eq!(mark, 1, "a watermark of 0 is raised to 1");
        assert_eq!(a.size as usize, std::mem::size_of::<perf_event_attr>());
    }
}
