//! Deciding: weigh the collected evidence into a [`Verdict`] with a [`Confidence`], then build
//! the per-hypervisor sections and the human-facing conclusions.
//!
//! Stage: the second half of detection, after [`crate::evidence`].
//! Input: a filled [`Ctx`] and the [`HostCapabilities`].
//! Output: the [`Verdict`] (kind, hypervisor, nesting, confidence, conflicts).

pub(crate) mod outcome;
pub(crate) mod xen;

use std::collections::HashMap;

use crate::cpuid::CpuidInfo;
use crate::evidence::{is_xen, Ctx};
use crate::host::HostCapabilities;
use crate::model::{Confidence, GuestKind, NestedVia, Signal, Strength, Verdict};
use crate::source::{KernelLogInfo, KernelLogStatus};

/// A hypervisor the verdict can name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Cand {
    Kvm,
    Xen,
    Pvm,
    Vmware,
    HyperV,
    Other,
}

/// The candidate `s` is evidence for, if any.
fn cand_of(s: Signal) -> Option<Cand> {
    Some(match s {
        Signal::Kvm => Cand::Kvm,
        Signal::PvmGuest => Cand::Pvm,
        Signal::Vmware => Cand::Vmware,
        Signal::HyperV => Cand::HyperV,
        Signal::OtherHypervisor => Cand::Other,
        s if is_xen(s) => Cand::Xen,
        _ => return None,
    })
}

/// Score the evidence per candidate and pick the verdict; the [`Verdict::summary`] and
/// [`Verdict::xen_mode`] are left for the caller.
pub(crate) fn decide(
    cx: &Ctx,
    host: &HostCapabilities,
    log: &KernelLogInfo,
    cpuid: &CpuidInfo,
) -> Verdict {
    let mut score: HashMap<Cand, (u32, Strength)> = HashMap::new();
    let mut virt = (0u32, None::<Strength>);
    let mut bare = (0u32, None::<Strength>);
    let mut not_pvm = (0u32, None::<Strength>);
    for e in &cx.evidence {
        let w = e.strength.weight();
        if let Some(c) = cand_of(e.signal) {
            let s = score.entry(c).or_insert((0, Strength::Weak));
            s.0 += w;
            s.1 = s.1.max(e.strength);
            continue;
        }
        let bump = |t: &mut (u32, Option<Strength>)| {
            t.0 += w;
            t.1 = Some(t.1.map_or(e.strength, |s| s.max(e.strength)));
        };
        match e.signal {
            Signal::Virtualized => bump(&mut virt),
            Signal::BareMetal => bump(&mut bare),
            Signal::NotPvmGuest => bump(&mut not_pvm),
            _ => {}
        }
    }
    let mut conflicts = Vec::new();

    // PVM is a kind of KVM: KVM evidence supports it; strong "not PVM" evidence vetoes it.
    if let Some(&(pvm_score, pvm_max)) = score.get(&Cand::Pvm) {
        let kvm = score.remove(&Cand::Kvm).unwrap_or((0, Strength::Weak));
        if not_pvm.1 == Some(Strength::Strong) && pvm_max == Strength::Strong {
            conflicts.push(
                "PVM guest evidence and the kernel's own \"not a PVM guest\" both present"
                    .to_string(),
            );
        }
        if not_pvm.1 == Some(Strength::Strong) && pvm_max < Strength::Strong {
            score.remove(&Cand::Pvm);
            score.insert(Cand::Kvm, kvm);
        } else {
            score.insert(Cand::Pvm, (pvm_score + kvm.0, pvm_max.max(kvm.1)));
        }
    }
    // Hyper-V leaves behind another hypervisor's signature are enlightenments, not Hyper-V.
    let mut ranked: Vec<(Cand, u32, Strength)> =
        score.iter().map(|(c, (s, m))| (*c, *s, *m)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));

    let any_evidence = !cx.evidence.is_empty();
    let (kind, hypervisor, confidence, unknown_reason) = if let Some(&(
        best,
        best_score,
        best_max,
    )) = ranked.first()
    {
        let second = ranked.get(1);
        if let Some(&(c2, _, m2)) = second {
            if m2 == Strength::Strong {
                conflicts.push(format!("strong evidence for {} as well", cand_label(c2)));
            }
        }
        if let Some(e) = cx
            .evidence
            .iter()
            .find(|e| e.signal == Signal::BareMetal && e.strength >= Strength::Moderate)
        {
            conflicts.push(format!("{}: {} ({})", e.source, e.observed, e.meaning));
        }
        let tie = second.is_some_and(|&(_, s2, m2)| s2 == best_score && m2 == best_max);
        if tie {
            (
                GuestKind::Unknown,
                None,
                Confidence::Low,
                Some(format!(
                    "evidence is split evenly between {} and {}",
                    cand_label(best),
                    cand_label(second.map(|s| s.0).unwrap_or(best))
                )),
            )
        } else {
            let conf = if best_max == Strength::Strong && conflicts.is_empty() {
                Confidence::High
            } else if best_max >= Strength::Moderate || best_score >= 3 {
                if conflicts.is_empty() || best_score >= 6 {
                    Confidence::Medium
                } else {
                    Confidence::Low
                }
            } else {
                Confidence::Low
            };
            let name = match best {
                Cand::Other => cx
                    .evidence
                    .iter()
                    .find(|e| e.signal == Signal::OtherHypervisor)
                    .map(|e| e.observed.clone()),
                c => Some(cand_label(c).to_string()),
            };
            (cand_kind(best), name, conf, None)
        }
    } else if virt.0 > 0 && virt.0 >= bare.0 {
        if bare.0 > 0 {
            conflicts.push("some evidence says bare metal".to_string());
        }
        let conf = if virt.1 == Some(Strength::Strong) && bare.1.is_none() {
            Confidence::Medium
        } else {
            Confidence::Low
        };
        (
            GuestKind::OtherGuest,
            Some("unidentified".to_string()),
            conf,
            None,
        )
    } else if bare.0 > 0 {
        if virt.0 > 0 {
            conflicts.push("some evidence says virtualized".to_string());
        }
        let conf = match (bare.1, virt.0) {
            (Some(Strength::Strong), 0) => Confidence::High,
            (Some(_), 0) if bare.0 >= 4 => Confidence::High,
            (Some(Strength::Moderate), 0) | (Some(Strength::Strong), _) => Confidence::Medium,
            _ => Confidence::Low,
        };
        (GuestKind::BareMetal, None, conf, None)
    } else {
        let mut why = Vec::new();
        if !cpuid.available {
            why.push(
                cpuid
                    .unavailable_reason
                    .clone()
                    .unwrap_or_else(|| "no CPUID".into()),
            );
        }
        match log.status {
            KernelLogStatus::Read => {
                if !log.starts_at_boot {
                    why.push("the kernel log does not reach back to boot (truncated), so it has no detection messages".into());
                } else {
                    why.push("the kernel log has no hypervisor messages".into());
                }
            }
            _ => why.push(log.note.clone().unwrap_or_else(|| "no kernel log".into())),
        }
        if !cx.fs.exists("/proc/cpuinfo") {
            why.push("no /proc/cpuinfo".into());
        }
        if !cx.fs.exists("/sys") {
            why.push("no /sys".into());
        }
        for p in &cx.fs.problems {
            why.push(format!("{}: {}", p.path, p.problem));
        }
        let reason = if any_evidence {
            format!("no evidence about the hypervisor: {}", why.join("; "))
        } else {
            format!("no usable evidence: {}", why.join("; "))
        };
        (GuestKind::Unknown, None, Confidence::None, Some(reason))
    };

    let is_guest = !matches!(kind, GuestKind::BareMetal | GuestKind::Unknown);
    let nested = is_guest && host.kvm;
    let nested_via = nested.then(|| {
        if host.hardware_virt {
            NestedVia::Hardware
        } else if host.kvm_backends.iter().any(|b| b == "kvm_pvm") || host.pvm_host {
            NestedVia::Pvm
        } else {
            NestedVia::Unknown
        }
    });
    Verdict {
        kind,
        hypervisor,
        xen_mode: None,
        nested,
        nested_via,
        pvm_host: host.pvm_host,
        confidence,
        summary: String::new(),
        conflicts,
        unknown_reason,
    }
}

/// The name of `c` in text.
fn cand_label(c: Cand) -> &'static str {
    match c {
        Cand::Kvm => "KVM",
        Cand::Xen => "Xen",
        Cand::Pvm => "PVM",
        Cand::Vmware => "VMware",
        Cand::HyperV => "Hyper-V",
        Cand::Other => "another hypervisor",
    }
}

/// The guest kind `c` stands for.
fn cand_kind(c: Cand) -> GuestKind {
    match c {
        Cand::Kvm => GuestKind::KvmGuest,
        Cand::Xen => GuestKind::XenGuest,
        Cand::Pvm => GuestKind::PvmGuest,
        Cand::Vmware => GuestKind::VmwareGuest,
        Cand::HyperV => GuestKind::HypervGuest,
        Cand::Other => GuestKind::OtherGuest,
    }
}
