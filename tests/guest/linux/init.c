/* SPDX-License-Identifier: MIT */
/*
 * PID 1 of the Linux test guest's initramfs (docs/linux-guest.md): it runs
 * the reference guest's self-checking workload and device traffic
 * (docs/guest.md) as an ordinary program on a stock Debian kernel, and
 * prints the same console lines.
 *
 * As PID 1 it mounts /proc, /sys and /dev, loads the modules listed in
 * /lib/modules/load.order, waits (bounded) for the virtio devices to
 * settle, runs, and powers off or reboots after ticks=N reports. It never
 * exits: a fatal problem is a "GUEST FAIL" line and then a power-off.
 *
 * Run by anything else it is a host test of the same code: the command
 * line is argv[1], the disk is env LINUX_INIT_DISK, the interface env
 * LINUX_INIT_NET, the rng env LINUX_INIT_RNG; it mounts, loads and powers
 * off nothing and exits after ticks=N: 0, or 1 if anything failed.
 *
 * Threads: the main thread reports every tick_ms and prints the workers'
 * failures; one worker thread per online CPU runs the memory workload
 * (work.c), pinned to its CPU and niced a little so the reports and the
 * I/O stay on time; one thread per device runs its traffic (io.c).
 */
#define _GNU_SOURCE
#include "init.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

#define CMDLINE_MAX 4096
#define LINE_MAX_LEN 512
#define LOAD_ORDER "/lib/modules/load.order"
#define DEV_WAIT (10 * HZ) /* for the virtio devices after the modules */
#define MAX_WORKERS 1024
#define WORKER_NICE 5

bool pid1;

static struct cfg cfg = {
	.dirty = true,
	.mib = 64,
	.rate = 0,
	.pattern = PAT_SEQ,
	.ticks = 0,
	.tick_ms = 100,
	.reboot = false,
};

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned int fail_lines; /* [out_lock] */
static bool failed;		/* [out_lock] any FAIL line: exit status */
static bool ending;		/* [out_lock] past POWEROFF/REBOOT: no FAIL */

/* The workers wait for go, so READY comes before the first fill. */
static pthread_mutex_t go_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go_cond = PTHREAD_COND_INITIALIZER;
static bool go; /* [go_lock] */

uint64_t jiffies_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * HZ +
	       (uint64_t)t.tv_nsec / (1000000000 / HZ);
}

/* Sleeps until CLOCK_MONOTONIC reaches jiffy @j. */
void sleep_until_jiffy(uint64_t j)
{
	struct timespec t = {
		.tv_sec = (time_t)(j / HZ),
		.tv_nsec = (long)(j % HZ) * (1000000000 / HZ),
	};

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL) ==
	       EINTR)
		;
}

/* Scrambles the bits of @x (as the reference guest's lib.c). */
uint64_t mix64(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x9e3779b97f4a7c15ULL;
	x ^= x >> 27;
	x *= 0xd6e8feb86659fd93ULL;
	x ^= x >> 32;
	return x;
}

/* One whole line per write(2), so lines of different threads never mix. */
static void out_write(char *buf, int n)
{
	ssize_t r;
	int off = 0;

	if (n < 0)
		return;
	if (n > LINE_MAX_LEN - 1)
		n = LINE_MAX_LEN - 1;
	buf[n++] = '\n';
	while (off < n) {
		r = write(STDOUT_FILENO, buf + off, (size_t)(n - off));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return;
		off += (int)r;
	}
}

void out_line(const char *fmt, ...)
{
	char buf[LINE_MAX_LEN + 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, LINE_MAX_LEN, fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&out_lock);
	out_write(buf, n);
	pthread_mutex_unlock(&out_lock);
}

/* "GUEST FAIL <reason>", at most FAIL_LINES_MAX of them per boot. */
void guest_fail(const char *fmt, ...)
{
	char why[LINE_MAX_LEN], buf[LINE_MAX_LEN + 1];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&out_lock);
	if (ending) {
		pthread_mutex_unlock(&out_lock);
		return;
	}
	failed = true;
	if (fail_lines < FAIL_LINES_MAX) {
		fail_lines++;
		out_write(buf,
			  snprintf(buf, LINE_MAX_LEN, "GUEST FAIL %s%s", why,
				   fail_lines == FAIL_LINES_MAX ?
					   " (more failures not shown)" :
					   ""));
	}
	pthread_mutex_unlock(&out_lock);
}

/*
 * The end: the device traffic stops, "GUEST POWEROFF" or "GUEST REBOOT",
 * then in the guest sync() and reboot(2); as a host test, exit with
 * @status (or 1 if a FAIL line came while the traffic stopped).
 */
static __attribute__((noreturn)) void finish(bool reboot_it, int status)
{
	io_stop();
	pthread_mutex_lock(&out_lock);
	if (failed && !status)
		status = 1;
	ending = true;
	pthread_mutex_unlock(&out_lock);
	out_line(reboot_it ? "GUEST REBOOT" : "GUEST POWEROFF");
	if (!pid1)
		exit(status);
	sync();
	reboot(reboot_it ? RB_AUTOBOOT : RB_POWER_OFF);
	/* PID 1 must never exit: the kernel would panic. */
	for (;;)
		pause();
}

static __attribute__((noreturn)) void fatal(const char *what)
{
	guest_fail("%s", what);
	finish(false, 2);
}

/*
 * Mounts /proc, /sys and /dev. The kernel gave PID 1 /dev/console as fds
 * 0-2 if the initramfs has that node; if not, it is opened from devtmpfs.
 * Returns the name of what failed, or NULL.
 */
static const char *boot_mounts(void)
{
	int fd;

	mkdir("/proc", 0555);
	mkdir("/sys", 0555);
	mkdir("/dev", 0755);
	if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"))
		return "mount-dev";
	if (fcntl(STDOUT_FILENO, F_GETFD) < 0) {
		fd = open("/dev/console", O_RDWR | O_NOCTTY);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
	}
	if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  NULL))
		return "mount-proc";
	if (mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  NULL))
		return "mount-sys";
	return NULL;
}

/* Reads the whole of a small file into @buf (NUL-terminated). */
static bool read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	buf[0] = 0;
	if (fd < 0)
		return false;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = 0;
	return true;
}

/* Does the word at @s start with @key? Returns what follows, or NULL. */
static const char *arg_match(const char *s, const char *key)
{
	size_t n = strlen(key);

	return strncmp(s, key, n) ? NULL : s + n;
}

/* A number as the reference guest reads it: decimal or 0x hex, k/m/g. */
static void arg_number(const char *v, uint64_t *out)
{
	unsigned int base = 10, digits = 0;
	uint64_t n = 0;

	if (v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
		base = 16;
		v += 2;
	}
	for (;; v++, digits++) {
		unsigned int d;

		if (*v >= '0' && *v <= '9')
			d = (unsigned int)(*v - '0');
		else if (base == 16 && *v >= 'a' && *v <= 'f')
			d = (unsigned int)(*v - 'a' + 10);
		else if (base == 16 && *v >= 'A' && *v <= 'F')
			d = (unsigned int)(*v - 'A' + 10);
		else
			break;
		n = n * base + d;
	}
	if (!digits)
		return;
	if (*v == 'k' || *v == 'K')
		n <<= 10;
	else if (*v == 'm' || *v == 'M')
		n <<= 20;
	else if (*v == 'g' || *v == 'G')
		n <<= 30;
	*out = n;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n';
}

/* Words separated by spaces; unknown words are ignored. */
static void parse_cmdline(const char *s)
{
	const char *v;

	while (*s) {
		while (is_space(*s))
			s++;
		if ((v = arg_match(s, "work=")))
			cfg.dirty = !arg_match(v, "idle");
		else if ((v = arg_match(s, "mib=")))
			arg_number(v, &cfg.mib);
		else if ((v = arg_match(s, "rate=")))
			arg_number(v, &cfg.rate);
		else if ((v = arg_match(s, "ticks=")))
			arg_number(v, &cfg.ticks);
		else if ((v = arg_match(s, "tick_ms=")))
			arg_number(v, &cfg.tick_ms);
		else if ((v = arg_match(s, "pattern=")))
			cfg.pattern = arg_match(v, "random") ? PAT_RANDOM :
				      arg_match(v, "hot")    ? PAT_HOT :
							       PAT_SEQ;
		else if ((v = arg_match(s, "end=")))
			cfg.reboot = arg_match(v, "reboot") != NULL;
		while (*s && !is_space(*s))
			s++;
	}
	if (!cfg.tick_ms)
		cfg.tick_ms = 100;
}

/*
 * The options for module @name from the kernel command line, as modprobe
 * passes them: every word "<name>.<param>=<value>" (with '-' and '_'
 * alike in the name) gives "<param>=<value>". Into @out.
 */
static void module_params(const char *cmdline, const char *name, char *out,
			  size_t size)
{
	size_t len = strlen(name), used = 0, i;
	const char *s = cmdline, *e;

	out[0] = 0;
	while (*s) {
		while (is_space(*s))
			s++;
		for (e = s; *e && !is_space(*e); e++)
			;
		for (i = 0; i < len && s + i < e; i++)
			if (s[i] != name[i] &&
			    !((s[i] == '-' || s[i] == '_') &&
			      (name[i] == '-' || name[i] == '_')))
				break;
		if (i == len && s + len < e && s[len] == '.' &&
		    (size_t)(e - s) - len - 1 + 2 < size - used) {
			if (used)
				out[used++] = ' ';
			memcpy(out + used, s + len + 1,
			       (size_t)(e - s) - len - 1);
			used += (size_t)(e - s) - len - 1;
			out[used] = 0;
		}
		s = e;
	}
}

/*
 * Loads the modules listed in LOAD_ORDER (one path a line, dependencies
 * first, written by prepare.sh) with finit_module(2). One already there
 * (EEXIST) is fine; one that fails is reported on a line of its own and
 * left out: the devices it drives then simply do not come up.
 */
static void modules_load(const char *cmdline)
{
	char path[1024], name[1024], params[1024];
	FILE *f = fopen(LOAD_ORDER, "re");

	if (!f)
		return;
	while (fgets(path, sizeof(path), f)) {
		const char *base;
		char *dot;
		int fd, flags = 0;

		path[strcspn(path, "\r\n")] = 0;
		if (!path[0] || path[0] == '#')
			continue;
		base = strrchr(path, '/');
		snprintf(name, sizeof(name), "%s", base ? base + 1 : path);
		dot = strstr(name, ".ko");
		if (dot) {
			/* Compressed modules: the kernel decompresses them. */
			if (dot[3])
				flags = MODULE_INIT_COMPRESSED_FILE;
			*dot = 0;
		}
		module_params(cmdline, name, params, sizeof(params));
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			out_line("init: cannot open %s: %s", path,
				 strerror(errno));
			continue;
		}
		if (syscall(SYS_finit_module, fd, params, flags) &&
		    errno != EEXIST)
			out_line("init: cannot load %s: %s", path,
				 strerror(errno));
		close(fd);
	}
	fclose(f);
}

/* Is virtio device @dev (sysfs name, type @id) ready for io.c? */
static bool virtio_ready(const char *dev, unsigned int id)
{
	char path[1024], buf[64];

	switch (id) {
	case 1: /* net: its interface exists */
		snprintf(path, sizeof(path), "/sys/bus/virtio/devices/%s/net",
			 dev);
		return access(path, F_OK) == 0;
	case 2: /* blk: its disk and the disk's node exist */
		snprintf(path, sizeof(path),
			 "/sys/bus/virtio/devices/%s/block/vda", dev);
		if (access(path, F_OK))
			return false;
		return access("/dev/vda", F_OK) == 0;
	case 4: /* rng: it is the current hwrng */
		read_small("/sys/class/misc/hw_random/rng_current", buf,
			   sizeof(buf));
		return !strncmp(buf, "virtio_rng", 10);
	default:
		return true; /* nothing of ours drives it */
	}
}

/*
 * Waits up to DEV_WAIT for every virtio device of a type io.c uses to get
 * its disk, interface or hwrng. Returns false on time-out.
 */
static bool devices_wait(void)
{
	uint64_t until = jiffies_now() + DEV_WAIT;
	char path[1024], buf[64];
	struct dirent *e;
	bool ready;
	DIR *dir;

	do {
		ready = true;
		dir = opendir("/sys/bus/virtio/devices");
		if (!dir)
			return true;
		while (ready && (e = readdir(dir))) {
			unsigned int id;

			if (e->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path),
				 "/sys/bus/virtio/devices/%s/device",
				 e->d_name);
			if (!read_small(path, buf, sizeof(buf)) ||
			    sscanf(buf, "%x", &id) != 1)
				continue;
			ready = virtio_ready(e->d_name, id);
		}
		closedir(dir);
		if (ready)
			return true;
		usleep(10000);
	} while ((int64_t)(jiffies_now() - until) < 0);
	return false;
}

/* The number of "processor" lines in /proc/cpuinfo. */
static unsigned int cpuinfo_count(void)
{
	char line[256];
	unsigned int n = 0;
	FILE *f = fopen("/proc/cpuinfo", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "processor", 9) &&
		    (line[9] == ' ' || line[9] == '\t' || line[9] == ':'))
			n++;
	fclose(f);
	return n;
}

/* A worker: waits for go, then runs its slot until the end. */
static void *worker(void *arg)
{
	unsigned int slot = (unsigned int)(uintptr_t)arg;

	setpriority(PRIO_PROCESS, (id_t)gettid(),
		    getpriority(PRIO_PROCESS, (id_t)gettid()) + WORKER_NICE);
	pthread_mutex_lock(&go_lock);
	while (!go)
		pthread_cond_wait(&go_cond, &go_lock);
	pthread_mutex_unlock(&go_lock);
	for (;;) {
		uint64_t j = jiffies_now();

		if (!work_step(slot, j))
			sleep_until_jiffy(j + 1);
	}
	return NULL;
}

/*
 * Starts one worker per CPU this process may run on, pinned there, with
 * slots 0..n-1 in CPU order. Returns n (0 if none could start).
 */
static unsigned int workers_start(void)
{
	pthread_attr_t attr;
	cpu_set_t all, one;
	unsigned int cpu, n = 0;
	pthread_t t;

	if (sched_getaffinity(0, sizeof(all), &all))
		return 0;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	for (cpu = 0; cpu < CPU_SETSIZE && n < MAX_WORKERS; cpu++) {
		if (!CPU_ISSET(cpu, &all))
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		if (pthread_attr_setaffinity_np(&attr, sizeof(one), &one) ||
		    pthread_create(&t, &attr, worker, (void *)(uintptr_t)n))
			continue;
		n++;
	}
	pthread_attr_destroy(&attr);
	return n;
}

static void workers_go(void)
{
	pthread_mutex_lock(&go_lock);
	go = true;
	pthread_cond_broadcast(&go_cond);
	pthread_mutex_unlock(&go_lock);
}

/* The TICK line and, with devices, the IO line. Returns the mismatches. */
static uint64_t report(uint64_t n)
{
	struct work_totals t;
	struct io_totals v;
	uint64_t bad;

	work_totals(&t);
	io_totals(&v);
	bad = t.mismatches + v.blk_bad + v.net_bad;
	out_line("GUEST TICK n=%llu written=%llu verified=%llu mismatches=%llu",
		 (unsigned long long)n, (unsigned long long)t.written,
		 (unsigned long long)t.verified, (unsigned long long)bad);
	if (io_any())
		out_line("GUEST IO n=%llu blk_w=%llu blk_r=%llu blk_bad=%llu "
			 "net_tx=%llu net_rx=%llu net_echo=%llu net_bad=%llu "
			 "rng=%llu",
			 (unsigned long long)n, (unsigned long long)v.blk_w,
			 (unsigned long long)v.blk_r,
			 (unsigned long long)v.blk_bad,
			 (unsigned long long)v.net_tx,
			 (unsigned long long)v.net_rx,
			 (unsigned long long)v.net_echo,
			 (unsigned long long)v.net_bad,
			 (unsigned long long)v.rng);
	return bad;
}

/*
 * Reports every tick_ms (rounded to 10 ms, at least one jiffy), on
 * CLOCK_MONOTONIC: intervals missed while the machine was stopped are
 * skipped, not replayed, and n only grows.
 */
static __attribute__((noreturn)) void main_loop(void)
{
	uint64_t every = MAX(cfg.tick_ms * HZ / 1000, 1ULL);
	uint64_t next = jiffies_now() + every, n = 0, bad;

	for (;;) {
		uint64_t j;

		sleep_until_jiffy(next);
		j = jiffies_now();
		work_report_fails();
		io_watchdog(j);
		if ((int64_t)(j - next) < 0)
			continue;
		bad = report(++n);
		next = j - next > every ? j + every : next + every;
		if (cfg.ticks && n >= cfg.ticks)
			finish(cfg.reboot, bad != 0);
	}
}

int main(int argc, char **argv)
{
	static char cmdline[CMDLINE_MAX];
	unsigned int ncpus;
	const char *err;
	uint64_t mib;

	pid1 = getpid() == 1;
	if (pid1) {
		err = boot_mounts();
		if (err)
			fatal(err);
		if (!read_small("/proc/cmdline", cmdline, sizeof(cmdline)))
			fatal("no-cmdline");
		modules_load(cmdline);
		if (!devices_wait())
			out_line("init: virtio devices not ready after %d s",
				 DEV_WAIT / HZ);
	} else if (argc > 1) {
		snprintf(cmdline, sizeof(cmdline), "%s", argv[1]);
	}
	parse_cmdline(cmdline);
	out_line("GUEST CPUINFO processors=%u", cpuinfo_count());
	{
		char cs[64];

		if (!read_small(
			    "/sys/devices/system/clocksource/clocksource0/current_clocksource",
			    cs, sizeof(cs)))
			snprintf(cs, sizeof(cs), "unknown");
		cs[strcspn(cs, "\n")] = 0;
		out_line("GUEST CLOCK %s", cs);
	}
	ncpus = workers_start();
	if (!ncpus)
		fatal("no-workers");
	if (work_setup(&cfg, ncpus, &mib))
		fatal("no-memory");
	out_line("GUEST READY cpus=%u mib=%llu", ncpus,
		 (unsigned long long)mib);
	io_probe();
	if (io_start())
		fatal("no-io-thread");
	workers_go();
	main_loop();
}
