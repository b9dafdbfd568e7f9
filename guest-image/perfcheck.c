/*
 * hvprof-perfcheck: proves in the guest that perf sampling works.
 *
 * 1. Opens a cpu-clock sampling event (PERF_TYPE_SOFTWARE /
 *    PERF_COUNT_SW_CPU_CLOCK, one sample per 1 ms of CPU time) on itself,
 *    spins for SPIN_MS, and counts PERF_RECORD_SAMPLE records in its ring.
 * 2. Opens the same event CPU-wide (pid -1, cpu 0), as a profiler of the
 *    whole guest would.
 * 3. Tries the hardware cycles event, which a TCG guest does not have.
 *
 * Output, one line each (the host's tests grep for them):
 *   hvprof-perfcheck: cpu-clock self ok samples=N user=U kernel=K
 *   hvprof-perfcheck: cpu-clock cpu-wide ok            (or: failed errno=...)
 *   hvprof-perfcheck: cycles unavailable errno=E (...) (or: cycles ok)
 * Exit status 0 when cpu-clock sampling produced samples.
 *
 * Second mode, a tiny in-guest profiler giving the ground truth of the
 * workload's shares under the guest's own clock:
 *   hvprof-perfcheck --shares PID MS SYMFILE
 * samples PID's main thread with cpu-clock (1 ms) for MS ms and buckets user IPs
 * by the functions listed in SYMFILE (`nm -S` lines: start size type name):
 *   hvprof-perfcheck: shares samples=N hot_alpha=60.1 hot_beta=29.9 ... kernel=0.4 other=0.1
 * (percent of all samples).
 *
 * Build: gcc -O1 -static -g -o hvprof-perfcheck perfcheck.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SPIN_MS 300
#define DATA_PAGES 16

static volatile unsigned long sink;

static int perf_open(struct perf_event_attr *attr, pid_t pid, int cpu)
{
	return (int)syscall(SYS_perf_event_open, attr, pid, cpu, -1, 0UL);
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void cpu_clock_attr(struct perf_event_attr *a)
{
	memset(a, 0, sizeof *a);
	a->size = sizeof *a;
	a->type = PERF_TYPE_SOFTWARE;
	a->config = PERF_COUNT_SW_CPU_CLOCK;
	a->sample_period = 1000000; /* ns of CPU time: 1 ms */
	a->sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_TID;
	a->disabled = 1;
}

#define MAX_SYMS 16
#define MAX_KIPS 256

struct sym {
	unsigned long start, size, hits;
	char name[64];
};

/* Copy LEN bytes at ring offset OFF, which may wrap past the end. */
static void ring_copy(const unsigned char *data, uint64_t size, uint64_t off, void *dst, size_t len)
{
	unsigned char *d = dst;
	for (size_t i = 0; i < len; i++)
		d[i] = data[(off + i) % size];
}

static int shares(pid_t pid, int ms, const char *symfile)
{
	struct sym syms[MAX_SYMS];
	int nsyms = 0;
	char line[256];
	FILE *f = fopen(symfile, "r");

	if (!f) {
		printf("hvprof-perfcheck: shares: cannot open %s: %s\n", symfile, strerror(errno));
		return 1;
	}
	while (nsyms < MAX_SYMS && fgets(line, sizeof line, f)) {
		char type;
		struct sym *sy = &syms[nsyms];
		if (sscanf(line, "%lx %lx %c %63s", &sy->start, &sy->size, &type, sy->name) == 4) {
			sy->hits = 0;
			nsyms++;
		}
	}
	fclose(f);

	struct perf_event_attr a;
	long page = sysconf(_SC_PAGESIZE);
	size_t len = (size_t)page * (1 + 256);
	/* No inherit: an inherited per-thread event cannot be mmapped. Only
	 * PID's main thread is sampled (the workload's default is 1 thread). */
	cpu_clock_attr(&a);
	int fd = perf_open(&a, pid, -1);
	if (fd < 0) {
		printf("hvprof-perfcheck: shares: perf_event_open pid %d: %s\n", (int)pid, strerror(errno));
		return 1;
	}
	struct perf_event_mmap_page *meta = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (meta == MAP_FAILED) {
		printf("hvprof-perfcheck: shares: mmap: %s\n", strerror(errno));
		return 1;
	}
	const unsigned char *data = (const unsigned char *)meta + meta->data_offset;
	uint64_t size = meta->data_size, tail = 0;
	unsigned long total = 0, kern = 0, other = 0, lost = 0;
	struct { uint64_t ip; unsigned long n; } kips[MAX_KIPS];
	memset(kips, 0, sizeof kips);
	double end = now_ms() + ms;

	ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
	for (;;) {
		int last = now_ms() >= end;
		if (last)
			ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);
		uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
		while (tail < head) {
			struct perf_event_header h;
			ring_copy(data, size, tail, &h, sizeof h);
			if (h.size < sizeof h)
				break;
			if (h.type == PERF_RECORD_SAMPLE) {
				uint64_t ip;
				ring_copy(data, size, tail + sizeof h, &ip, sizeof ip);
				total++;
				if ((h.misc & PERF_RECORD_MISC_CPUMODE_MASK) != PERF_RECORD_MISC_USER) {
					kern++;
					for (int k = 0; k < MAX_KIPS; k++) {
						if (kips[k].n == 0 || kips[k].ip == ip) {
							kips[k].ip = ip;
							kips[k].n++;
							break;
						}
					}
				} else {
					int i;
					for (i = 0; i < nsyms; i++)
						if (ip >= syms[i].start && ip < syms[i].start + syms[i].size)
							break;
					if (i < nsyms)
						syms[i].hits++;
					else
						other++;
				}
			} else if (h.type == PERF_RECORD_LOST) {
				uint64_t n;
				ring_copy(data, size, tail + sizeof h + 8, &n, sizeof n);
				lost += (unsigned long)n;
			}
			tail += h.size;
		}
		__atomic_store_n(&meta->data_tail, tail, __ATOMIC_RELEASE);
		if (last)
			break;
		usleep(50000);
	}
	printf("hvprof-perfcheck: shares pid=%d ms=%d samples=%lu lost=%lu", (int)pid, ms, total, lost);
	for (int i = 0; i < nsyms; i++)
		printf(" %s=%.1f", syms[i].name, total ? 100.0 * (double)syms[i].hits / (double)total : 0.0);
	printf(" kernel=%.1f other=%.1f\n", total ? 100.0 * (double)kern / (double)total : 0.0,
	       total ? 100.0 * (double)other / (double)total : 0.0);
	/* The most frequent kernel IPs (resolve them with System.map). */
	printf("hvprof-perfcheck: kernel-top");
	for (int shown = 0; shown < 5; shown++) {
		int best = -1;
		for (int k = 0; k < MAX_KIPS; k++)
			if (kips[k].n && (best < 0 || kips[k].n > kips[best].n))
				best = k;
		if (best < 0)
			break;
		printf(" 0x%llx:%lu", (unsigned long long)kips[best].ip, kips[best].n);
		kips[best].n = 0;
	}
	printf("\n");
	munmap(meta, len);
	close(fd);
	return total > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct perf_event_attr a;
	long page = sysconf(_SC_PAGESIZE);
	size_t len = (size_t)page * (1 + DATA_PAGES);
	unsigned long samples = 0, user = 0, kernel = 0;
	int fd, ok;

	if (argc == 5 && strcmp(argv[1], "--shares") == 0)
		return shares((pid_t)atoi(argv[2]), atoi(argv[3]), argv[4]);
	if (argc != 1) {
		fprintf(stderr, "usage: hvprof-perfcheck [--shares PID MS SYMFILE]\n");
		return 2;
	}
	cpu_clock_attr(&a);
	fd = perf_open(&a, 0, -1);
	if (fd < 0) {
		printf("hvprof-perfcheck: cpu-clock self failed errno=%d (%s)\n", errno, strerror(errno));
		return 1;
	}
	struct perf_event_mmap_page *meta = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (meta == MAP_FAILED) {
		printf("hvprof-perfcheck: mmap failed errno=%d (%s)\n", errno, strerror(errno));
		return 1;
	}
	ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
	double end = now_ms() + SPIN_MS;
	while (now_ms() < end)
		for (int i = 0; i < 10000; i++)
			sink += (unsigned long)i;
	ioctl(fd, PERF_EVENT_IOC_DISABLE, 0);

	uint64_t head = __atomic_load_n(&meta->data_head, __ATOMIC_ACQUIRE);
	uint64_t tail = meta->data_tail;
	const unsigned char *data = (const unsigned char *)meta + meta->data_offset;
	uint64_t size = meta->data_size;
	while (tail < head) {
		struct perf_event_header h;
		/* Headers are 8-byte aligned and never split by the ring's end. */
		memcpy(&h, data + (tail % size), sizeof h);
		if (h.size == 0)
			break;
		if (h.type == PERF_RECORD_SAMPLE) {
			samples++;
			switch (h.misc & PERF_RECORD_MISC_CPUMODE_MASK) {
			case PERF_RECORD_MISC_USER: user++; break;
			case PERF_RECORD_MISC_KERNEL: kernel++; break;
			default: break;
			}
		}
		tail += h.size;
	}
	__atomic_store_n(&meta->data_tail, tail, __ATOMIC_RELEASE);
	ok = samples > 0;
	printf("hvprof-perfcheck: cpu-clock self %s samples=%lu user=%lu kernel=%lu spin_ms=%d\n",
	       ok ? "ok" : "NO-SAMPLES", samples, user, kernel, SPIN_MS);
	munmap(meta, len);
	close(fd);

	cpu_clock_attr(&a);
	fd = perf_open(&a, -1, 0);
	if (fd >= 0) {
		printf("hvprof-perfcheck: cpu-clock cpu-wide ok\n");
		close(fd);
	} else {
		printf("hvprof-perfcheck: cpu-clock cpu-wide failed errno=%d (%s)\n", errno, strerror(errno));
	}

	memset(&a, 0, sizeof a);
	a.size = sizeof a;
	a.type = PERF_TYPE_HARDWARE;
	a.config = PERF_COUNT_HW_CPU_CYCLES;
	a.sample_period = 1000000;
	a.disabled = 1;
	fd = perf_open(&a, 0, -1);
	if (fd >= 0) {
		printf("hvprof-perfcheck: cycles ok\n");
		close(fd);
	} else {
		printf("hvprof-perfcheck: cycles unavailable errno=%d (%s)\n", errno, strerror(errno));
	}
	return ok ? 0 : 1;
}
