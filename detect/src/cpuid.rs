//! CPUID: the live instruction, or a captured dump (`cpuid.txt`).
//!
//! The `cpuid.txt` format of captured trees is described on [`CpuidDump`].

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::error::{Error, Result};

#[cfg(target_arch = "x86")]
use core::arch::x86 as arch;
#[cfg(target_arch = "x86_64")]
use core::arch::x86_64 as arch;

/// First hypervisor leaf (Intel SDM Vol. 2A, CPUID: "leaves 40000000H–4FFFFFFFH are reserved
/// for hypervisor use"; Linux `arch/x86/include/uapi/asm/kvm_para.h` `KVM_CPUID_SIGNATURE`).
pub const HYPERVISOR_LEAF_FIRST: u32 = 0x4000_0000;
/// Step between candidate hypervisor bases: a hypervisor that also offers Hyper-V
/// compatibility (Xen with Viridian, KVM with Hyper-V enlightenments) moves its own leaves
/// to `0x40000100`. Linux `arch/x86/include/asm/processor.h` `hypervisor_cpuid_base()` scans
/// the same range with the same step.
pub const HYPERVISOR_LEAF_STEP: u32 = 0x100;
/// End (exclusive) of the hypervisor-base scan, as in `hypervisor_cpuid_base()`.
pub const HYPERVISOR_LEAF_END: u32 = 0x4001_0000;

/// Leaf 1 ECX bit 31: "hypervisor present" (reserved for hypervisor use; Linux
/// `X86_FEATURE_HYPERVISOR`, `arch/x86/include/asm/cpufeatures.h`).
pub const LEAF1_ECX_HYPERVISOR: u32 = 1 << 31;
/// Leaf 1 ECX bit 5: VMX (Intel VT-x).
pub const LEAF1_ECX_VMX: u32 = 1 << 5;
/// Leaf 0x80000001 ECX bit 2: SVM (AMD-V).
pub const EXT1_ECX_SVM: u32 = 1 << 2;

/// The four output registers of one CPUID leaf/subleaf.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CpuidRegs {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

impl CpuidRegs {
    /// The 12-byte vendor/hypervisor signature in EBX, ECX, EDX (little-endian bytes), as used
    /// by leaf `0x40000000` ("KVMKVMKVM\0\0\0", "XenVMMXenVMM", ...).
    pub fn signature(&self) -> [u8; 12] {
        let mut s = [0u8; 12];
        s[0..4].copy_from_slice(&self.ebx.to_le_bytes());
        s[4..8].copy_from_slice(&self.ecx.to_le_bytes());
        s[8..12].copy_from_slice(&self.edx.to_le_bytes());
        s
    }
}

/// A set of CPUID results keyed by (leaf, subleaf), from the live CPU or a `cpuid.txt`.
///
/// # The `cpuid.txt` format
///
/// The raw format of the `cpuid` tool (`cpuid -r -1`), which is also what
/// [`CpuidDump::to_text`] writes:
///
/// ```text
/// # comment lines and blank lines are ignored; so is a "CPU 0:" header
/// CPU 0:
///    0x00000001 0x00: eax=0x00a00f11 ebx=0x00020800 ecx=0xfffa3203 edx=0x178bfbff
///    0x40000000 0x00: eax=0x40000001 ebx=0x4b4d564b ecx=0x564b4d56 edx=0x0000004d
/// ```
///
/// Each line is `LEAF SUBLEAF: eax=.. ebx=.. ecx=.. edx=..` with hexadecimal values (`0x`
/// optional); `SUBLEAF` may be omitted (then 0). A second `CPU n:` header ends the dump (only
/// the first CPU is used). Leaves that are not in the file are "not captured", never zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuidDump {
    entries: BTreeMap<(u32, u32), CpuidRegs>,
}

impl CpuidDump {
    /// Parse the `cpuid.txt` format described on [`CpuidDump`].
    ///
    /// # Errors
    ///
    /// [`Error::CpuidDump`] for the first line that is not a comment, a `CPU n:` header, or a
    /// well-formed leaf line; and when no leaf line at all is found.
    pub fn parse(text: &str) -> Result<Self> {
        let mut entries = BTreeMap::new();
        let mut seen_cpu_header = false;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with("CPU") {
                if seen_cpu_header {
                    break;
                }
                seen_cpu_header = true;
                continue;
            }
            let err = |reason: &str| Error::CpuidDump {
                line: line_no,
                reason: reason.to_string(),
            };
            let (left, right) = line
                .split_once(':')
                .ok_or_else(|| err("expected 'LEAF SUBLEAF: eax=.. ebx=.. ecx=.. edx=..'"))?;
            let mut keys = left.split_whitespace();
            let leaf = keys
                .next()
                .ok_or_else(|| err("missing leaf"))
                .and_then(|t| parse_hex(t).ok_or_else(|| err("leaf is not hexadecimal")))?;
            let sub = match keys.next() {
                Some(t) => parse_hex(t).ok_or_else(|| err("subleaf is not hexadecimal"))?,
                None => 0,
            };
            if keys.next().is_some() {
                return Err(err("more than two numbers before ':'"));
            }
            let mut regs = [None::<u32>; 4];
            for kv in right.split_whitespace() {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| err("expected reg=value"))?;
                let idx = match k.to_ascii_lowercase().as_str() {
                    "eax" => 0,
                    "ebx" => 1,
                    "ecx" => 2,
                    "edx" => 3,
                    _ => return Err(err("register must be eax, ebx, ecx or edx")),
                };
                regs[idx] = Some(parse_hex(v).ok_or_else(|| err("value is not hexadecimal"))?);
            }
            let [Some(eax), Some(ebx), Some(ecx), Some(edx)] = regs else {
                return Err(err("need all four of eax, ebx, ecx, edx"));
            };
            entries.insert((leaf, sub), CpuidRegs { eax, ebx, ecx, edx });
        }
        if entries.is_empty() {
            return Err(Error::CpuidDump {
                line: 0,
                reason: "no CPUID leaves in the dump".to_string(),
            });
        }
        Ok(CpuidDump { entries })
    }

    /// Write the dump in the `cpuid.txt` format (see [`CpuidDump`]).
    pub fn to_text(&self) -> String {
        let mut s = String::from("# CPUID dump (hvprof-detect; format of `cpuid -r -1`)\nCPU 0:\n");
        for ((leaf, sub), r) in &self.entries {
            let _ = writeln!(
                s,
                "   0x{leaf:08x} 0x{sub:02x}: eax=0x{:08x} ebx=0x{:08x} ecx=0x{:08x} edx=0x{:08x}",
                r.eax, r.ebx, r.ecx, r.edx
            );
        }
        s
    }

    /// The registers of `leaf`/`subleaf`, if captured.
    pub fn get(&self, leaf: u32, subleaf: u32) -> Option<CpuidRegs> {
        self.entries.get(&(leaf, subleaf)).copied()
    }

    /// Insert or replace one result.
    pub fn insert(&mut self, leaf: u32, subleaf: u32, regs: CpuidRegs) {
        self.entries.insert((leaf, subleaf), regs);
    }

    /// Execute CPUID on the current CPU for the leaves detection uses: 0, 1, 0x80000000,
    /// 0x80000001 and, when leaf 1 reports a hypervisor, every base `0x40000000 + k*0x100`
    /// below `0x40010000` whose signature is not all zero, with its next two leaves.
    ///
    /// Returns `None` on targets other than x86/x86_64.
    pub fn capture_live() -> Option<Self> {
        #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
        {
            let mut d = CpuidDump::default();
            for leaf in [0, 1, 0x8000_0000, 0x8000_0001] {
                d.insert(leaf, 0, raw_cpuid(leaf, 0));
            }
            let hyp = d
                .get(1, 0)
                .is_some_and(|r| r.ecx & LEAF1_ECX_HYPERVISOR != 0);
            if !hyp {
                // Without the hypervisor bit these leaves are not defined (Intel returns the
                // highest basic leaf); keep the first one so a reader can see that.
                d.insert(
                    HYPERVISOR_LEAF_FIRST,
                    0,
                    raw_cpuid(HYPERVISOR_LEAF_FIRST, 0),
                );
                return Some(d);
            }
            let mut base = HYPERVISOR_LEAF_FIRST;
            while base < HYPERVISOR_LEAF_END {
                let r = raw_cpuid(base, 0);
                if r.ebx != 0 || r.ecx != 0 || r.edx != 0 {
                    d.insert(base, 0, r);
                    for off in 1..=2 {
                        d.insert(base + off, 0, raw_cpuid(base + off, 0));
                    }
                }
                base += HYPERVISOR_LEAF_STEP;
            }
            Some(d)
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
        {
            None
        }
    }
}

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
#[allow(unused_unsafe)] // `__cpuid_count` became a safe fn in newer toolchains; MSRV 1.80 needs `unsafe`.
fn raw_cpuid(leaf: u32, sub: u32) -> CpuidRegs {
    // SAFETY: the intrinsic's only precondition is that the CPUID instruction exists. It does
    // on every x86_64 CPU (part of the x86_64 baseline) and on every 32-bit x86 CPU hvprof
    // targets (i486 and later, the last two decades). It reads no memory and has no side
    // effects visible to Rust.
    let r = unsafe { arch::__cpuid_count(leaf, sub) };
    CpuidRegs {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

fn parse_hex(t: &str) -> Option<u32> {
    let t = t.trim().trim_end_matches(',');
    let t = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    if t.is_empty() || t.len() > 8 {
        return None;
    }
    u32::from_str_radix(t, 16).ok()
}

/// A hypervisor recognised by its CPUID signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureVendor {
    /// `"KVMKVMKVM\0\0\0"` (Linux `kvm_para.h` `KVM_SIGNATURE`); also what a PVM guest sees.
    Kvm,
    /// `"XenVMMXenVMM"` (Xen `xen/include/public/arch-x86/cpuid.h` `XEN_CPUID_SIGNATURE_*`).
    Xen,
    /// `"Microsoft Hv"` (Hyper-V TLFS; also KVM or Xen offering Hyper-V enlightenments).
    HyperV,
    /// `"VMwareVMware"`.
    Vmware,
    /// `"TCGTCGTCGTCG"`: QEMU without acceleration.
    QemuTcg,
    /// `"VBoxVBoxVBox"`: VirtualBox.
    VirtualBox,
    /// `"bhyve bhyve "`.
    Bhyve,
    /// `"ACRNACRNACRN"`.
    Acrn,
    /// `" lrpepyh  vr"`: Parallels.
    Parallels,
    /// Any other non-empty signature.
    Unknown,
}

impl SignatureVendor {
    /// Classify a 12-byte signature.
    pub fn from_signature(sig: &[u8; 12]) -> Self {
        match sig {
            b"KVMKVMKVM\0\0\0" => Self::Kvm,
            b"XenVMMXenVMM" => Self::Xen,
            b"Microsoft Hv" => Self::HyperV,
            b"VMwareVMware" => Self::Vmware,
            b"TCGTCGTCGTCG" => Self::QemuTcg,
            b"VBoxVBoxVBox" => Self::VirtualBox,
            b"bhyve bhyve " => Self::Bhyve,
            b"ACRNACRNACRN" => Self::Acrn,
            b" lrpepyh  vr" => Self::Parallels,
            _ => Self::Unknown,
        }
    }
}

/// One hypervisor signature found in the `0x40000000..0x40010000` scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HypervisorLeaf {
    /// The base leaf (`0x40000000`, `0x40000100`, ...).
    pub base: u32,
    /// The signature, printable ASCII kept and other bytes written as `\0` or `\xNN`.
    pub signature: String,
    /// Who the signature names.
    pub vendor: SignatureVendor,
    /// EAX of the base leaf: the highest leaf of this hypervisor's range.
    pub max_leaf: u32,
}

/// What CPUID says, as far as detection is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuidInfo {
    /// Whether any CPUID data was available.
    pub available: bool,
    /// `"live CPUID instruction"` or the `cpuid.txt` path.
    pub origin: Option<String>,
    /// Why no CPUID data is available (no `cpuid.txt` in the tree, malformed dump, not x86).
    pub unavailable_reason: Option<String>,
    /// Leaf 1 ECX bit 31, the "hypervisor present" bit; `None` if leaf 1 was not captured.
    pub hypervisor_bit: Option<bool>,
    /// Recognised or non-empty signatures in the hypervisor range, lowest base first. Empty if
    /// the hypervisor bit is clear (the range is then undefined).
    pub hypervisor_leaves: Vec<HypervisorLeaf>,
    /// Leaf 1 ECX bit 5 (VMX). Inside a guest this only says whether nested VMX is offered.
    pub vmx: Option<bool>,
    /// Leaf 0x80000001 ECX bit 2 (SVM). Inside a guest this only says whether nested SVM is
    /// offered.
    pub svm: Option<bool>,
}

impl CpuidInfo {
    pub(crate) fn unavailable(origin: Option<String>, reason: String) -> Self {
        CpuidInfo {
            available: false,
            origin,
            unavailable_reason: Some(reason),
            hypervisor_bit: None,
            hypervisor_leaves: Vec::new(),
            vmx: None,
            svm: None,
        }
    }

    pub(crate) fn from_dump(dump: &CpuidDump, origin: String) -> Self {
        let leaf1 = dump.get(1, 0);
        let hypervisor_bit = leaf1.map(|r| r.ecx & LEAF1_ECX_HYPERVISOR != 0);
        let mut leaves = Vec::new();
        // Scan only when the hypervisor bit is set, or when leaf 1 was not captured (a hand
        // written dump may hold only the hypervisor leaves).
        if hypervisor_bit != Some(false) {
            let mut base = HYPERVISOR_LEAF_FIRST;
            while base < HYPERVISOR_LEAF_END {
                if let Some(r) = dump.get(base, 0) {
                    let sig = r.signature();
                    if sig.iter().any(|&b| b != 0) {
                        leaves.push(HypervisorLeaf {
                            base,
                            signature: escape_signature(&sig),
                            vendor: SignatureVendor::from_signature(&sig),
                            max_leaf: r.eax,
                        });
                    }
                }
                base += HYPERVISOR_LEAF_STEP;
            }
        }
        CpuidInfo {
            available: true,
            origin: Some(origin),
            unavailable_reason: None,
            hypervisor_bit,
            hypervisor_leaves: leaves,
            vmx: leaf1.map(|r| r.ecx & LEAF1_ECX_VMX != 0),
            svm: dump.get(0x8000_0001, 0).map(|r| r.ecx & EXT1_ECX_SVM != 0),
        }
    }
}

/// Printable form of a signature: `KVMKVMKVM\0\0\0`.
pub fn escape_signature(sig: &[u8]) -> String {
    let mut s = String::new();
    for &b in sig {
        match b {
            0 => s.push_str("\\0"),
            0x20..=0x7e => s.push(b as char),
            _ => {
                let _ = write!(s, "\\x{b:02x}");
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpuid_tool_format_and_round_trips() {
        let text = "CPU 0:\n   0x40000000 0x00: eax=0x40000001 ebx=0x4b4d564b ecx=0x564b4d56 edx=0x0000004d\n0x1: eax=0 ebx=0 ecx=80000000 edx=0\nCPU 1:\n0x2 0: eax=1 ebx=1 ecx=1 edx=1\n";
        let d = CpuidDump::parse(text).unwrap();
        let r = d.get(0x4000_0000, 0).unwrap();
        assert_eq!(&r.signature(), b"KVMKVMKVM\0\0\0");
        assert_eq!(d.get(1, 0).unwrap().ecx, 0x8000_0000);
        assert!(d.get(2, 0).is_none(), "second CPU ignored");
        assert_eq!(CpuidDump::parse(&d.to_text()).unwrap(), d);
    }

    #[test]
    fn rejects_malformed_lines() {
        for bad in [
            "garbage",
            "0x1 0x0: eax=zz ebx=0 ecx=0 edx=0",
            "0x1 0x0: eax=0 ebx=0 ecx=0",
            "0x1 0x0: eax=0 ebx=0 ecx=0 edx=0 esi=0",
            "0x123456789 0: eax=0 ebx=0 ecx=0 edx=0",
            "# only a comment",
            "",
        ] {
            assert!(CpuidDump::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn escapes_signatures() {
        assert_eq!(escape_signature(b"KVMKVMKVM\0\0\0"), "KVMKVMKVM\\0\\0\\0");
        assert_eq!(escape_signature(&[0xff, b'a']), "\\xffa");
    }
}
