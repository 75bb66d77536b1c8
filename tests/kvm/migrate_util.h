/* SPDX-License-Identifier: MIT */
#ifndef VMM_TESTS_MIGRATE_UTIL_H
#define VMM_TESTS_MIGRATE_UTIL_H

/*
 * What the migration tests (test_migrate.c and test_migrate_bad.c) share:
 * vmrun sources and destinations started, migrated and stopped through
 * their control sockets, and the guests on their consoles watched. Each
 * is described where it is defined, in migrate_util.c.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "tests/kvm/run_util.h"

#define CAP (1 << 20)
#define DEADLINE_MS 300000
/* Writing all the time: every round finds pages written again. */
#define CMDLINE "work=dirty mib=16 rate=0 tick_ms=100 verify_ms=200"
/* One verification pass of that workload. */
#define WORK_PAGES 4096ull

/* The last vmrun run's stdout and stderr; the test's directory. */
extern char mig_out[CAP], mig_err[CAP], mig_top[64];
extern unsigned long long mig_work_pages;
extern int mig_dest_keep_fd;
extern const char *mig_dest_listen;

/* A vmrun process: its pid, console file, control socket and stderr. */
struct vmp {
	pid_t pid;
	char con[128], sock[128], errf[128];
};

pid_t mig_spawn(const char *const *argv, const char *err_path, int keep_fd);
void mig_setup(void);
void mig_cleanup(void);
char *mig_slurp(const char *path, char *buf, size_t len);
void mig_names(struct vmp *v, const char *name);
void mig_start_source(struct vmp *v, const char *disk, const char *cmdline);
void mig_start_dest(struct vmp *v, const char *const *extra, char *uri,
		    size_t len);
int mig_reap(struct vmp *v);
int mig_ctl_migrate(const struct vmp *v, const char *uri);
struct console_scan mig_wait_guest(const struct vmp *v, unsigned int ticks,
				   bool pass, unsigned int splices);
void mig_check_continues(const struct vmp *from, const struct vmp *to);
int mig_stop_vm(struct vmp *v);
void mig_make_disk(const char *path);
pid_t mig_spawn_migrate(const struct vmp *v, const char *uri, const char *errf,
			const char *const *extra);

/* The tests in test_migrate_bad.c, listed in migrate_tests[]. */
void test_migrate_failures_lose_nothing(void);
void test_migrate_cancel(void);
void test_migrate_stalls(void);
void test_migrate_bad_streams(void);
void test_migrate_bad_arguments(void);

#endif /* VMM_TESTS_MIGRATE_UTIL_H */
