/* SPDX-License-Identifier: MIT */
#include "tests/kvm/run_util.h"

#include <dirent.h>
#include <sched.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/harness/test_util.h"

/* Asks @until about the complete lines of @out only (@len bytes). */
static bool until_lines(char *out, size_t len, run_until_t until, void *arg)
{
	char *nl = memrchr(out, '\n', len), saved;
	bool ok;

	if (!nl)
		return false;
	saved = nl[1];
	nl[1] = 0;
	ok = until(out, arg);
	nl[1] = saved;
	return ok;
}

int run_vmrun(const char *const *argv, char *out, char *err, size_t cap,
	      int timeout_ms)
{
	return run_vmrun_until(argv, out, err, cap, timeout_ms, 0, NULL, NULL);
}

/*
 * Where each thread of @pid waits in the kernel, on stderr: what a process
 * that outlives SIGKILL is stuck in.
 */
static void dump_threads(pid_t pid)
{
	char path[512], buf[4096];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	while (d && (e = readdir(d))) {
		static const char *const what[] = { "stat", "wchan", "stack" };
		unsigned int i;

		if (e->d_name[0] == '.')
			continue;
		for (i = 0; i < 3; i++) {
			int fd;
			ssize_t r;

			snprintf(path, sizeof(path), "/proc/%d/task/%s/%s",
				 (int)pid, e->d_name, what[i]);
			fd = open(path, O_RDONLY);
			r = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
			if (fd >= 0)
				close(fd);
			buf[r > 0 ? r : 0] = 0;
			fprintf(stderr, "  thread %s %s: %s\n", e->d_name,
				what[i], buf);
		}
	}
	if (d)
		closedir(d);
}

/*
 * Reaps @pid after a SIGKILL, giving it 30 s (a deadline): a process that
 * outlives that is stuck in the kernel, uninterruptibly; says where and
 * returns false instead of waiting for ever (-1 in @status's place).
 */
static bool reap_killed(pid_t pid, int *status)
{
	int i;

	for (i = 0; i < 3000; i++) {
		if (waitpid(pid, status, WNOHANG) == pid)
			return true;
		usleep(10000);
	}
	fprintf(stderr,
		"\n  vmrun (pid %d) outlived SIGKILL by 30 s; its "
		"threads:\n",
		(int)pid);
	dump_threads(pid);
	*status = 0xff00; /* exit status 255 */
	return false;
}

int run_vmrun_until(const char *const *argv, char *out, char *err, size_t cap,
		    int timeout_ms, int sig, run_until_t until, void *arg)
{
	const char *args[64];
	int po[2], pe[2], status, i, n = 0;
	size_t lo = 0, le = 0;
	unsigned long long t0 = now_ns();
	bool sent = false;
	pid_t pid;

	args[n++] = VMRUN_BIN;
	for (i = 0; argv[i] && n < 63; i++)
		args[n++] = argv[i];
	args[n] = NULL;
	if (pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);

		dup2(devnull, 0);
		dup2(po[1], 1);
		dup2(pe[1], 2);
		execv(VMRUN_BIN, (char *const *)(uintptr_t)args);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	for (;;) {
		struct pollfd p[2] = { { po[0], POLLIN, 0 },
				       { pe[0], POLLIN, 0 } };
		int el = (int)((now_ns() - t0) / 1000000ULL);
		char buf[4096];
		ssize_t r;

		if (el >= timeout_ms) {
			kill(pid, SIGKILL);
			break;
		}
		if (poll(p, 2, 20) <= 0)
			continue;
		if (p[0].revents) {
			r = read(po[0], buf, sizeof(buf));
			if (r > 0 && lo + (size_t)r < cap) {
				memcpy(out + lo, buf, (size_t)r);
				lo += (size_t)r;
				out[lo] = 0;
				if (until && !sent &&
				    until_lines(out, lo, until, arg)) {
					kill(pid, sig);
					sent = true;
				}
			}
			if (r == 0)
				p[0].fd = -1;
		}
		if (p[1].revents) {
			r = read(pe[0], buf, sizeof(buf));
			if (r > 0 && le + (size_t)r < cap) {
				memcpy(err + le, buf, (size_t)r);
				le += (size_t)r;
			}
		}
		if (waitpid(pid, &status, WNOHANG) == pid)
			goto done;
	}
	if (!reap_killed(pid, &status)) {
		/* Still there: what is left is never read (it may write on). */
		fcntl(po[0], F_SETFL, O_NONBLOCK);
		fcntl(pe[0], F_SETFL, O_NONBLOCK);
	}
done:
	/* Drain what is left. */
	for (;;) {
		ssize_t r = read(po[0], out + lo, cap - 1 - lo);

		if (r <= 0)
			break;
		lo += (size_t)r;
	}
	for (;;) {
		ssize_t r = read(pe[0], err + le, cap - 1 - le);

		if (r <= 0)
			break;
		le += (size_t)r;
	}
	out[lo] = 0;
	err[le] = 0;
	close(po[0]);
	close(pe[0]);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

unsigned long long last_kv(const char *s, const char *prefix, const char *key)
{
	const char *p = s, *line = NULL, *k;
	char pat[32];

	/* Whole lines only: a console's last line may be cut short (a
	 * migration's source stops mid-line). */
	while ((p = strstr(p, prefix))) {
		if (strchr(p, '\n'))
			line = p;
		p++;
	}
	if (!line)
		return ~0ULL;
	snprintf(pat, sizeof(pat), " %s=", key);
	k = strstr(line, pat);
	if (!k || (strchr(line, '\n') && k > strchr(line, '\n')))
		return ~0ULL;
	return strtoull(k + strlen(pat), NULL, 0);
}

pid_t spawn_vmrun(const char *const *argv, const char *err_path, int keep_fd)
{
	const char *a[64] = { "vmrun" };
	unsigned int n = 1;
	pid_t pid;

	while (*argv && n < 63)
		a[n++] = *argv++;
	a[n] = NULL;
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		int e = err_path ? open(err_path, O_CREAT | O_TRUNC | O_WRONLY,
					0600) :
				   -1;

		/* Gone with the test process, whatever becomes of the test. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, 0);
		dup2(null, 1);
		dup2(e >= 0 ? e : null, 2);
		if (keep_fd >= 0) {
			dup2(keep_fd, 3);
			fcntl(3, F_SETFD, 0);
		}
		execv(VMRUN_BIN, (char *const *)(uintptr_t)a);
		_exit(127);
	}
	return pid;
}

void *slurp_file(const char *path, size_t *n)
{
	struct stat st;
	void *p;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) < 0) {
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	p = malloc((size_t)st.st_size);
	if (p && pread(fd, p, (size_t)st.st_size, 0) != st.st_size) {
		free(p);
		p = NULL;
	}
	close(fd);
	*n = (size_t)st.st_size;
	return p;
}

long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int reap_vmrun(pid_t pid, int timeout_ms)
{
	int i, st;

	for (i = 0; i < timeout_ms / 10; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) :
					       128 + WTERMSIG(st);
		usleep(10000);
	}
	kill(pid, SIGKILL);
	reap_killed(pid, &st);
	return -1;
}

bool wait_file(const char *path, pid_t pid, int timeout_ms)
{
	int i, st;

	for (i = 0; i < timeout_ms / 10; i++) {
		if (!access(path, F_OK))
			return true;
		if (waitpid(pid, &st, WNOHANG) == pid)
			return false;
		usleep(10000);
	}
	return !access(path, F_OK);
}

bool console_scan(const char *path, struct console_scan *cs)
{
	FILE *f = fopen(path, "r");
	char line[512];
	size_t at = 0;

	memset(cs, 0, sizeof(*cs));
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long n, w, v, mm;
		bool wrong = false;
		int end = -1;

		/* The last line without its newline is still being written
		 * (or was cut by a stop): not read until it is whole. */
		if (!strchr(line, '\n') && feof(f)) {
			snprintf(cs->last_line, sizeof(cs->last_line), "%.159s",
				 line);
			break;
		}
		line[strcspn(line, "\r\n")] = 0;
		snprintf(cs->last_line, sizeof(cs->last_line), "%.159s", line);
		if (strstr(line, "GUEST FAIL")) {
			wrong = true;
		} else if (!strstr(line, "GUEST TICK")) {
			continue;
		} else if (sscanf(line,
				  "GUEST TICK n=%llu written=%llu "
				  "verified=%llu mismatches=%llu%n",
				  &n, &w, &v, &mm, &end) == 4 &&
			   end == (int)strlen(line)) {
			if (!cs->ticks++) {
				cs->first_n = n;
				cs->first_verified = v;
				cs->first_written = w;
			}
			cs->last_n = n;
			cs->last_verified = v;
			cs->last_written = w;
			wrong = mm != 0;
		} else if (cs->broken++ < 3) {
			snprintf(cs->broken_line[cs->broken - 1],
				 sizeof(cs->broken_line[0]), "%.159s", line);
		}
		if (wrong && cs->bad++ < 8 && at < sizeof(cs->why))
			at += (size_t)snprintf(cs->why + at,
					       sizeof(cs->why) - at, "\n  %s",
					       line);
	}
	fclose(f);
	return true;
}

/* Sends every frame back where it came from. */
void *echo_thread(void *arg)
{
	struct echo *e = arg;
	uint8_t buf[2048];

	while (!e->stop) {
		struct timeval tv = { 0, 100000 };
		ssize_t n;

		setsockopt(e->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		n = recv(e->fd, buf, sizeof(buf), 0);
		if (n <= 0)
			continue;
		/* An announcement (RARP) is counted, not echoed. */
		if (n >= 42 && buf[12] == 0x80 && buf[13] == 0x35) {
			memcpy(e->rarp_mac, buf + 6, 6);
			__atomic_add_fetch(&e->rarps, 1, __ATOMIC_SEQ_CST);
			continue;
		}
		/* Never blocks: a peer that stopped reading loses frames. */
		if (send(e->fd, buf, (size_t)n, MSG_DONTWAIT) == n)
			__atomic_add_fetch(&e->frames, 1, __ATOMIC_SEQ_CST);
	}
	return NULL;
}

static int sh(const char *cmd)
{
	char full[512];

	snprintf(full, sizeof(full), "%s >/dev/null 2>&1", cmd);
	return system(full);
}

bool test_two_hosts(bool up)
{
	char cmd[256];
	int pid = (int)getpid(), i;

	if (!up) {
		for (i = 0; i < 2; i++) {
			snprintf(cmd, sizeof(cmd),
				 "ip netns del vmrun-mig%d-%c", pid, 'a' + i);
			sh(cmd);
		}
		return true;
	}
	for (i = 0; i < 2; i++) {
		snprintf(cmd, sizeof(cmd), "ip netns add vmrun-mig%d-%c", pid,
			 'a' + i);
		if (sh(cmd))
			return false;
	}
	snprintf(cmd, sizeof(cmd),
		 "ip link add vmrmig%da netns vmrun-mig%d-a type veth peer "
		 "name vmrmig%db netns vmrun-mig%d-b",
		 pid % 100000, pid, pid % 100000, pid);
	if (sh(cmd))
		return false;
	for (i = 0; i < 2; i++) {
		snprintf(
			cmd, sizeof(cmd),
			"ip -n vmrun-mig%d-%c addr add " TWO_HOSTS_NET
			"%d/24 dev "
			"vmrmig%d%c && ip -n vmrun-mig%d-%c link set vmrmig%d%c "
			"up && ip -n vmrun-mig%d-%c link set lo up",
			pid, 'a' + i, i + 1, pid % 100000, 'a' + i, pid,
			'a' + i, pid % 100000, 'a' + i, pid, 'a' + i);
		if (sh(cmd))
			return false;
	}
	return true;
}

int test_enter_host(int i)
{
	char path[96];
	int fd, ret;

	snprintf(path, sizeof(path), "/var/run/netns/vmrun-mig%d-%c",
		 (int)getpid(), 'a' + i);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ret = fd >= 0 ? setns(fd, CLONE_NEWNET) : -1;
	if (fd >= 0)
		close(fd);
	return ret;
}
