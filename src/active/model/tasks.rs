//! The per-guest-process table: processes and threads with their names over time, exec
//! times, and executable maps; the handlers of `Comm` and `Mmap` messages; name and map
//! lookups at a guest time.

use super::{limit, GuestModel, ModelError};

/// One executable map of a guest process (guest virtual addresses).
#[derive(Debug, Clone)]
pub(super) struct GuestMap {
    /// Guest event-clock ns of the mmap.
    pub(super) time: u64,
    /// First guest virtual address.
    pub(super) start: u64,
    /// One past the last guest virtual address.
    pub(super) end: u64,
    /// File offset of `start`, bytes.
    pub(super) pgoff: u64,
    /// The helper's file key (build-id or its own); empty: no symbol table.
    pub(super) key: Vec<u8>,
    /// The guest's path (a label; the host never opens it).
    pub(super) path: String,
}

/// A guest process or thread.
#[derive(Debug, Clone, Default)]
pub(super) struct Task {
    /// `(time, comm)`, time order.
    comms: Vec<(u64, String)>,
    /// exec times (processes only).
    execs: Vec<u64>,
    /// Executable maps (processes only).
    maps: Vec<GuestMap>,
}

impl GuestModel {
    /// The task `tid`, created when new.
    ///
    /// # Errors
    /// [`ModelError::Limit`] past [`Budget::max_tasks`](super::Budget::max_tasks) or the
    /// memory budget.
    fn task_mut(&mut self, tid: u32) -> Result<&mut Task, ModelError> {
        if !self.tasks.contains_key(&tid) {
            if self.tasks.len() >= self.budget.max_tasks {
                return Err(limit(format!(
                    "more than {} guest tasks",
                    self.budget.max_tasks
                )));
            }
            self.charge(128)?;
        }
        Ok(self.tasks.entry(tid).or_default())
    }

    /// A `Comm` message: thread `tid` of process `pid` is named `comm` from guest time
    /// `time` on; with `exec`, the process exec'd then (older maps stop applying).
    pub(super) fn on_comm(
        &mut self,
        pid: u32,
        tid: u32,
        time: u64,
        exec: bool,
        comm: String,
    ) -> Result<(), ModelError> {
        self.see_time(time);
        self.thread_pid.insert(tid, pid);
        self.charge(comm.len() + 16)?;
        let t = self.task_mut(tid)?;
        if t.comms.last().map(|c| &c.1) != Some(&comm) {
            if t.comms.len() >= 64 {
                t.comms.remove(0);
            }
            let i = t.comms.partition_point(|c| c.0 <= time);
            t.comms.insert(i, (time, comm.clone()));
        }
        if tid != pid {
            self.task_mut(pid)?;
        }
        if exec {
            let p = self.task_mut(pid)?;
            if p.execs.len() < 1024 {
                p.execs.push(time);
                p.execs.sort_unstable();
            }
            if tid != pid {
                // The process took the exec'ing thread's name.
                if p.comms.len() < 64 {
                    let i = p.comms.partition_point(|c| c.0 <= time);
                    p.comms.insert(i, (time, comm));
                }
            }
        }
        Ok(())
    }

    /// An `Mmap` message: process `pid` mapped `map` (a duplicate is ignored).
    pub(super) fn on_mmap(&mut self, pid: u32, map: GuestMap) -> Result<(), ModelError> {
        self.see_time(map.time);
        self.stats.maps += 1;
        let max = self.budget.max_maps_per_process;
        self.charge(map.path.len() + map.key.len() + 64)?;
        let t = self.task_mut(pid)?;
        let dup = t.maps.iter().any(|m| {
            m.start == map.start && m.end == map.end && m.pgoff == map.pgoff && m.key == map.key
        });
        if !dup {
            if t.maps.len() >= max {
                return Err(limit(format!("more than {max} maps for guest pid {pid}")));
            }
            t.maps.push(map);
        }
        Ok(())
    }

    /// The name of guest thread `tid` (process `pid`) at guest time `time`.
    pub fn comm(&self, pid: u32, tid: u32, time: u64) -> String {
        let pick = |t: &Task| -> Option<String> {
            let i = t.comms.partition_point(|c| c.0 <= time);
            let i = if i == 0 { 0 } else { i - 1 };
            t.comms.get(i).map(|c| c.1.clone())
        };
        if let Some(c) = self.tasks.get(&tid).and_then(pick) {
            return c;
        }
        if let Some(c) = self.tasks.get(&pid).and_then(pick) {
            return c;
        }
        if pid == 0 {
            return "swapper".into();
        }
        "[unknown]".into()
    }

    /// The map of process `pid` containing `ip` at guest time `time`: the latest one mapped
    /// at or before `time` and not older than the last exec; else any containing `ip`.
    pub(super) fn find_map(&self, pid: u32, ip: u64, time: u64) -> Option<&GuestMap> {
        let t = self.tasks.get(&pid)?;
        let last_exec = t.execs.iter().rev().find(|&&e| e <= time).copied();
        let containing = t.maps.iter().filter(|m| ip >= m.start && ip < m.end);
        containing
            .clone()
            .filter(|m| m.time <= time && last_exec.is_none_or(|e| m.time >= e))
            .max_by_key(|m| m.time)
            .or_else(|| containing.max_by_key(|m| m.time))
    }

    /// Guest processes known: `(pid, latest comm)`.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = self
            .tasks
            .iter()
            .filter(|(pid, _)| self.thread_pid.get(pid).is_none_or(|p| p == *pid))
            .map(|(pid, t)| {
                (
                    *pid,
                    t.comms.last().map(|c| c.1.clone()).unwrap_or_default(),
                )
            })
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::model_with_process;
    use hvprof_proto::Message;

    #[test]
    fn exec_replaces_maps() {
        let mut m = model_with_process();
        m.apply(Message::Comm {
            pid: 77,
            tid: 77,
            time: 1000,
            exec: true,
            comm: "other".into(),
        })
        .unwrap();
        // After the exec, the old map no longer applies... unless nothing else does.
        m.apply(Message::Mmap {
            pid: 77,
            tid: 77,
            time: 1001,
            start: 0x5555_0000_1000,
            len: 0x1000,
            pgoff: 0,
            prot: 5,
            file_key: vec![],
            build_id: vec![],
            path: "/bin/other".into(),
        })
        .unwrap();
        assert_eq!(
            m.user_symbol(77, 0x5555_0000_1150, 500).name,
            "hot_alpha",
            "before the exec"
        );
        let s = m.user_symbol(77, 0x5555_0000_1150, 2000);
        assert_eq!(s.dso, "other");
        assert_eq!(m.comm(77, 77, 500), "hvprof-workload");
        assert_eq!(m.comm(77, 77, 2000), "other");
    }
}
