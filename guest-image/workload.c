/*
 * hvprof-workload: a test workload with known hot user functions.
 *
 * Each round runs three identical busy loops for 6:3:1 units of iterations:
 *
 *     hot_alpha: 6 * unit   -> expected ~60% of the workload's CPU time
 *     hot_beta:  3 * unit   -> expected ~30%
 *     hot_gamma: 1 * unit   -> expected ~10%
 *
 * (starting at a pseudo-random unit of the 6:3:1 layout, see run_round())
 * and then does a little kernel work (getppid(), open/read/close of
 * /proc/self/stat), so that guest kernel symbols show up in a profile
 * without moving the user-space shares by more than a fraction of a point.
 *
 * The three functions have the same body, are never inlined or cloned and
 * their accumulator is volatile, so the cost of one iteration is the same in
 * all three and the shares follow the iteration counts.
 *
 * Build (see guest-image/build.sh):
 *     gcc -O1 -static -g -fno-omit-frame-pointer -fno-ipa-icf \
 *         -o hvprof-workload workload.c -lpthread
 * Keep the symbols (do not strip): hvprof resolves guest user addresses with
 * this ELF file. The binary is static and not PIE, so its addresses are the
 * link-time ones.
 *
 * Mode "callers" (-m callers) instead runs one hot function reached from two
 * callers, for call-stack tests:
 *
 *     via_left  -> hot_shared: 7 * unit   -> ~70% of the time, stack via_left
 *     via_right -> hot_shared: 3 * unit   -> ~30%, stack via_right
 *
 * laid out and started like the shares mode (chunks 0-6 via_left, 7-9
 * via_right, from a pseudo-random chunk). via_left and via_right are
 * noinline/noclone and do a little work after the call, so gcc can neither
 * inline nor tail-call them away: with frame pointers every sample in
 * hot_shared unwinds through exactly one of them.
 *
 * Usage: hvprof-workload [-m MODE] [-d SECONDS] [-t THREADS] [-u UNIT] [SECONDS]
 *     -m MODE                  shares (default: hot_alpha/beta/gamma 60/30/10)
 *                              or callers (hot_shared via via_left/via_right
 *                              70/30)
 *     -d / positional SECONDS  run time, default 20; 0 = until killed
 *     -t THREADS               threads running the same rounds, default 1
 *     -u UNIT                  iterations per share unit, default 1000000
 *                              (a round is 10 * UNIT iterations: ~8 ms on
 *                              this host, ~30 ms in a TCG guest)
 * Environment: HVPROF_WORKLOAD_UNIT overrides the default unit.
 *
 * Output (stdout, one line each, flushed):
 *     hvprof-workload: start pid=P tid=T duration_s=D threads=N unit=U
 *     hvprof-workload: sym hot_alpha=0x... hot_beta=0x... hot_gamma=0x...
 *     (callers mode: sym hot_shared=0x... via_left=0x... via_right=0x...)
 *     hvprof-workload: done rounds=R elapsed_ms=E
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Sum of all accumulators, so that the loops are not dead code. */
static volatile unsigned long sink;

static volatile sig_atomic_t stop_requested;

/*
 * The three hot functions. Their bodies must stay identical: the expected
 * shares rely on one iteration costing the same in each.
 */
__attribute__((noinline, noclone)) void hot_alpha(unsigned long n)
{
	volatile unsigned long acc = 0;
	for (unsigned long i = 0; i < n; i++)
		acc += i ^ (acc >> 3);
	sink += acc;
}

__attribute__((noinline, noclone)) void hot_beta(unsigned long n)
{
	volatile unsigned long acc = 0;
	for (unsigned long i = 0; i < n; i++)
		acc += i ^ (acc >> 3);
	sink += acc;
}

__attribute__((noinline, noclone)) void hot_gamma(unsigned long n)
{
	volatile unsigned long acc = 0;
	for (unsigned long i = 0; i < n; i++)
		acc += i ^ (acc >> 3);
	sink += acc;
}

/*
 * Mode "callers": one hot function (the same body as the three above), reached
 * from two callers in a known proportion.
 */
__attribute__((noinline, noclone)) void hot_shared(unsigned long n)
{
	volatile unsigned long acc = 0;
	for (unsigned long i = 0; i < n; i++)
		acc += i ^ (acc >> 3);
	sink += acc;
}

/* The work after the call keeps the call a call (no tail call to hot_shared). */
__attribute__((noinline, noclone)) void via_left(unsigned long n)
{
	hot_shared(n);
	sink += 1;
}

__attribute__((noinline, noclone)) void via_right(unsigned long n)
{
	hot_shared(n);
	sink += 1;
}

/* A little kernel work per round: a cheap syscall and a procfs read. */
__attribute__((noinline)) static void kernel_work(void)
{
	char buf[512];
	int fd;

	sink += (unsigned long)getppid();
	fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t r = read(fd, buf, sizeof buf);
		if (r > 0)
			sink += (unsigned long)buf[0];
		close(fd);
	}
}

struct config {
	int callers;       /* mode "callers" */
	double duration_s; /* 0: until killed */
	unsigned long unit;
	int threads;
};

struct worker {
	pthread_t thread;
	const struct config *cfg;
	struct worker *base; /* workers[0], to number the thread */
	unsigned long rounds;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * One round: 10 chunks of UNIT iterations laid out as
 *     chunk 0-5: hot_alpha   6-8: hot_beta   9: hot_gamma
 * and run from chunk START on, wrapping around (consecutive chunks of one
 * function are one call). Every round thus does exactly 6:3:1, but the
 * function that runs right after kernel_work() -- when a busy host tends to
 * preempt the vCPU, and samples go missing -- is alpha, beta or gamma with
 * probability 6:3:1, so missing samples do not skew the shares.
 */
__attribute__((noinline)) static void run_round(unsigned long unit, unsigned start)
{
	unsigned pos = start % 10, left = 10;

	while (left) {
		unsigned end = pos < 6 ? 6 : pos < 9 ? 9 : 10;
		unsigned n = end - pos;
		if (n > left)
			n = left;
		if (pos < 6)
			hot_alpha(n * unit);
		else if (pos < 9)
			hot_beta(n * unit);
		else
			hot_gamma(n * unit);
		left -= n;
		pos = (pos + n) % 10;
	}
}

/*
 * Mode "callers": chunks 0-6 go through via_left, 7-9 through via_right, from
 * chunk START on, wrapping around, as in run_round().
 */
__attribute__((noinline)) static void run_round_callers(unsigned long unit, unsigned start)
{
	unsigned pos = start % 10, left = 10;

	while (left) {
		unsigned end = pos < 7 ? 7 : 10;
		unsigned n = end - pos;
		if (n > left)
			n = left;
		if (pos < 7)
			via_left(n * unit);
		else
			via_right(n * unit);
		left -= n;
		pos = (pos + n) % 10;
	}
}

__attribute__((noinline)) static unsigned long run_rounds(const struct config *cfg, unsigned seed)
{
	const double start = now_s();
	unsigned long rounds = 0;
	unsigned rng = seed * 2654435761u + 1;

	while (!stop_requested) {
		rng = rng * 1103515245u + 12345u; /* deterministic LCG */
		if (cfg->callers)
			run_round_callers(cfg->unit, (rng >> 16) % 10);
		else
			run_round(cfg->unit, (rng >> 16) % 10);
		kernel_work();
		rounds++;
		if (cfg->duration_s > 0 && now_s() - start >= cfg->duration_s)
			break;
	}
	return rounds;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	w->rounds = run_rounds(w->cfg, (unsigned)(w - w->base));
	return NULL;
}

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(const char *argv0)
{
	fprintf(stderr,
		"usage: %s [-m shares|callers] [-d SECONDS] [-t THREADS] [-u UNIT] [SECONDS]\n",
		argv0);
	exit(2);
}

static double parse_double(const char *s, const char *what)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || v < 0) {
		fprintf(stderr, "hvprof-workload: bad %s: '%s'\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	struct config cfg = { .callers = 0, .duration_s = 20, .unit = 1000000, .threads = 1 };
	const char *env_unit = getenv("HVPROF_WORKLOAD_UNIT");
	struct sigaction sa;
	struct worker *workers;
	unsigned long total = 0;
	double start;
	int opt;

	if (env_unit && *env_unit)
		cfg.unit = (unsigned long)parse_double(env_unit, "HVPROF_WORKLOAD_UNIT");
	while ((opt = getopt(argc, argv, "m:d:t:u:h")) != -1) {
		switch (opt) {
		case 'm':
			if (strcmp(optarg, "callers") == 0)
				cfg.callers = 1;
			else if (strcmp(optarg, "shares") == 0)
				cfg.callers = 0;
			else
				usage(argv[0]);
			break;
		case 'd':
			cfg.duration_s = parse_double(optarg, "duration");
			break;
		case 't':
			cfg.threads = (int)parse_double(optarg, "threads");
			break;
		case 'u':
			cfg.unit = (unsigned long)parse_double(optarg, "unit");
			break;
		default:
			usage(argv[0]);
		}
	}
	if (optind < argc)
		cfg.duration_s = parse_double(argv[optind++], "duration");
	if (optind < argc || cfg.threads < 1 || cfg.unit < 1)
		usage(argv[0]);

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("hvprof-workload: start pid=%d tid=%ld duration_s=%g threads=%d unit=%lu mode=%s\n",
	       (int)getpid(), (long)syscall(SYS_gettid), cfg.duration_s,
	       cfg.threads, cfg.unit, cfg.callers ? "callers" : "shares");
	if (cfg.callers)
		printf("hvprof-workload: sym hot_shared=%p via_left=%p via_right=%p\n",
		       (void *)hot_shared, (void *)via_left, (void *)via_right);
	else
		printf("hvprof-workload: sym hot_alpha=%p hot_beta=%p hot_gamma=%p\n",
		       (void *)hot_alpha, (void *)hot_beta, (void *)hot_gamma);

	start = now_s();
	workers = calloc((size_t)cfg.threads, sizeof *workers);
	if (!workers) {
		perror("hvprof-workload: calloc");
		return 1;
	}
	/* Thread 0 is the main thread; the others are extra pthreads. */
	for (int i = 1; i < cfg.threads; i++) {
		workers[i].cfg = &cfg;
		workers[i].base = workers;
		int err = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
		if (err) {
			fprintf(stderr, "hvprof-workload: pthread_create: %s\n", strerror(err));
			return 1;
		}
	}
	workers[0].cfg = &cfg;
	workers[0].rounds = run_rounds(&cfg, 0);
	for (int i = 1; i < cfg.threads; i++)
		pthread_join(workers[i].thread, NULL);
	for (int i = 0; i < cfg.threads; i++)
		total += workers[i].rounds;

	printf("hvprof-workload: done rounds=%lu elapsed_ms=%.0f\n", total,
	       (now_s() - start) * 1000.0);
	free(workers);
	return 0;
}
