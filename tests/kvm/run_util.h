/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_RUN_UTIL_H
#define VMM_TESTS_RUN_UTIL_H

/* Running the vmrun binary from tests. */

#include <stdbool.h>
#include <stddef.h>

/* Called with the complete lines of standard output so far. */
typedef bool (*run_until_t)(const char *out, void *arg);

/*
 * Runs VMRUN_BIN with @argv (NULL-terminated, without argv[0]) and no
 * standard input; captures stdout and stderr (each up to @cap bytes,
 * NUL-terminated) and returns the exit status (128 + N for signal N).
 * Kills it after @timeout_ms, a deadline for a run gone wrong, never a
 * window the run is expected to fit in.
 */
int run_vmrun(const char *const *argv, char *out, char *err, size_t cap,
	      int timeout_ms);

/*
 * The same, and sends @sig once @until returns true for the output so far:
 * a test waits on the guest's progress, not on the clock.
 */
int run_vmrun_until(const char *const *argv, char *out, char *err, size_t cap,
		    int timeout_ms, int sig, run_until_t until, void *arg);

/*
 * Starts VMRUN_BIN with @argv (NULL-terminated, without argv[0]) in the
 * background: no standard input or output, standard error into the file
 * @err_path (or nowhere), and @keep_fd (or -1) passed on as fd 3. The
 * process is killed when the test process dies. Returns its pid.
 */
#include <sys/types.h>
pid_t spawn_vmrun(const char *const *argv, const char *err_path, int keep_fd);

/*
 * Waits (a deadline, not a window) for @pid to exit and returns its exit
 * status (128 + N for signal N); past @timeout_ms it kills it with
 * SIGKILL and returns -1, so a process that hangs fails the test instead
 * of hanging it.
 */
int reap_vmrun(pid_t pid, int timeout_ms);

/*
 * Waits (a deadline, not a window) until the file at @path exists; false
 * if @pid exited first or the deadline passed.
 */
bool wait_file(const char *path, pid_t pid, int timeout_ms);

/*
 * The value of " @key=" in the last whole line (one that ends in a
 * newline) of @s that holds @prefix (a console's "GUEST IO" line, say),
 * or ~0 if there is none.
 */
unsigned long long last_kv(const char *s, const char *prefix, const char *key);

/*
 * What a guest's console file says (the reference guest's and the Linux
 * guest's contract, docs/guest.md). A console file is written a byte at
 * a time, so a restore or a reset into the middle of a line splices the
 * line it cut with the rest of the line the saved state had begun: such
 * TICK lines are counted as @broken, not read. A last line without its
 * newline (still being written, or cut by a stop) is not read at all. A splice never forms a whole TICK line with
 * mismatches (the saved state's line had none to finish), so @bad holds
 * only what the guest itself reported: FAIL lines and whole TICK lines
 * with mismatches, the first few quoted in @why.
 */
struct console_scan {
	unsigned int ticks;  /* whole TICK lines */
	unsigned int broken; /* TICK lines not whole (splices, a cut end) */
	unsigned int bad;
	unsigned long long first_n, last_n; /* n= of the first, last */
	unsigned long long first_verified, last_verified;
	unsigned long long first_written, last_written;
	char why[1024];
	char broken_line[3][160]; /* the first broken lines, for messages */
	char last_line[160];	  /* the file's last line, for messages */
};

/* The whole file at @path, malloc()ed, and its size; NULL if unreadable. */
void *slurp_file(const char *path, size_t *n);

/* Monotonic milliseconds, for deadlines. */
long long now_ms(void);

/* Scans the console file at @path; false if it cannot be read. */
bool console_scan(const char *path, struct console_scan *cs);

/* A thread that sends every frame on @fd back where it came from, except
 * RARP announcements, which it counts (the last one's source MAC kept). */
struct echo {
	int fd;
	volatile int stop;
	unsigned int frames;
	unsigned int rarps;
	unsigned char rarp_mac[6]; /* written before rarps is bumped */
};

void *echo_thread(void *arg);

/*
 * Two "hosts" for migration tests: network namespaces vmrun-mig<PID>-a
 * and -b joined by a veth pair, host a at TWO_HOSTS_NET "1" and host b
 * at TWO_HOSTS_NET "2" (/24). test_two_hosts(true) creates them (false
 * where ip netns or veth is missing: call test_two_hosts(false) then
 * too), test_two_hosts(false) removes them. test_enter_host(i) moves
 * the calling thread into host i's network (0: a, 1: b), so that what it
 * starts lives there; 0 or -1. Go back with setns() on a descriptor of
 * /proc/self/ns/net taken before.
 */
#define TWO_HOSTS_NET "10.213.7."
bool test_two_hosts(bool up);
int test_enter_host(int i);

#endif /* VMM_TESTS_RUN_UTIL_H */
