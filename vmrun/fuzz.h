/* SPDX-License-Identifier: MIT */
#ifndef VMM_VMRUN_FUZZ_H
#define VMM_VMRUN_FUZZ_H

/*
 * vmrun fuzz, shared by its parts: cmd_fuzz.c (the command), fuzz_sa.c
 * (the standalone mutator, corpus, crashes and reports), fuzz_afl.c
 * (afl-fuzz's fork-server protocol) and fuzz_jobs.c (--jobs).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "snapshot/fuzzer.h"

struct machine;
struct machine_config;
struct checkpoint;
struct harness_desc;

#define QUEUE_MAX 4096
#define SEED_MAX (1u << 20)
#define STATUS_NS 250000000ULL

struct entry {
	uint8_t *data;
	size_t len;
};

struct fz {
	struct machine *m;
	struct fuzzer *f;
	const char *corpus, *crashes;
	bool crash_snaps, afl, tty, ready;
	uint64_t max_execs, time_ns, start_ns, last_status, max_crashes;
	uint64_t rng;
	struct entry queue[QUEUE_MAX];
	unsigned int nq, next_seed;
	uint8_t *virgin; /* AFL-style: bits of hit-count buckets not yet seen */
	uint32_t cov_size;
	uint64_t paths, saved_crashes;
	uint64_t crash_sigs[1024];
	unsigned int nr_sigs;
	/* --afl */
	uint8_t *afl_map;
	uint32_t afl_map_size;
	const char *input_path;
	pid_t stand_in;
	int status_fd;
	/* --jobs */
	unsigned int jobs;
	bool child;
	char err[512];
};

/* fuzz_sa.c */
extern const struct fuzzer_ops fuzz_sa_ops;
void fuzz_sa_ready(void *opaque);
int fuzz_load_corpus(struct fz *z);
void fuzz_print_status(struct fz *z, bool final);
void fuzz_print_final(const struct fuzzer_stats *st, uint64_t paths,
		      uint64_t saved, double secs, double rps,
		      unsigned int jobs);

/* fuzz_afl.c */
extern const struct fuzzer_ops fuzz_afl_ops;
/* True if afl-fuzz's fork-server pipes are there. */
bool fuzz_afl_pipes(void);
/* Ends the stand-in process, if there is one. */
void fuzz_afl_end(struct fz *z);
#define FUZZ_AFL_CTL_FD 198
#define FUZZ_AFL_ST_FD 199

/* fuzz_jobs.c: forks z->jobs processes fuzzing from @ck (see --jobs). */
int fuzz_run_jobs(struct fz *z, const struct machine_config *mc,
		  struct checkpoint *ck, const struct harness_desc *d,
		  const struct fuzzer_opts *fo);

#endif /* VMM_VMRUN_FUZZ_H */
