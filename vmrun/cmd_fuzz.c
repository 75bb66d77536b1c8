/* SPDX-License-Identifier: MIT */
/*
 * vmrun fuzz: snapshot fuzzing of a guest that speaks the harness
 * protocol (kernel/x86/vmrun_harness.h, docs/fuzzing.md), standalone with
 * its own coverage-guided mutator (fuzz_sa.c), or driven by afl-fuzz
 * through AFL's fork-server protocol (--afl, fuzz_afl.c), in one process
 * or several (--jobs, fuzz_jobs.c). The execution engine is
 * snapshot/fuzzer.c; this file has the command line.
 */
#include <getopt.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernel/machine.h"
#include "kernel/util/log.h"
#include "kernel/dev/harness.h"
#include "snapshot/checkpoint.h"
#include "snapshot/fuzzer.h"
#include "snapshot/vmsnap.h"
#include "vmrun/fuzz.h"
#include "vmrun/vmrun.h"

#define DEFAULT_CMDLINE "work=fuzz"
/*
 * Dirty ring entries per vCPU (512 KiB; KVM caps it at what it allows):
 * up to half of them hold the pages of executions that write thousands
 * of pages (dirty_hold()), and a ring that fills mid-execution costs an
 * exit to user space.
 */
#define FUZZ_RING_ENTRIES 32768u

static void fuzz_usage(FILE *f)
{
	fprintf(f,
		"usage: vmrun fuzz --corpus DIR --crashes DIR [OPTIONS]\n"
		"       afl-fuzz -i IN -o OUT -- vmrun fuzz --afl [OPTIONS]\n"
		"\n"
		"Boots a guest (or restores --snapshot) that speaks vmrun's fuzzing\n"
		"harness, takes a checkpoint where the guest asks, then runs one input\n"
		"per execution and puts the machine back to the checkpoint after each,\n"
		"copying back only the pages the execution wrote. The built-in\n"
		"reference guest's example target (work=fuzz) has a bug to find.\n"
		"\n"
		"  --kernel FILE      the guest (default: the built-in reference guest)\n"
		"  --cmdline STRING   its command line (default \"" DEFAULT_CMDLINE
		"\")\n"
		"  --snapshot IMAGE   restore this image instead of booting; the guest\n"
		"                     in it announces its harness once restored\n"
		"  --mem SIZE         guest RAM (default 256M); one vCPU\n"
		"  --rng              add a virtio-rng device\n"
		"  --console SPEC     the guest's console: none (default), stdio, file:PATH\n"
		"  --dirty-log        track dirty pages with KVM's dirty log (default: the\n"
		"                     dirty ring, if KVM has it; its cost follows the pages\n"
		"                     written, the log's follows the guest's size)\n"
		"  --no-hold          with the ring, give every page an execution wrote\n"
		"                     back to KVM's write protection at each reset; by\n"
		"                     default pages the executions keep writing stay\n"
		"                     writable and are copied back at every reset,\n"
		"                     which spares a fault per page and execution\n"
		"  --corpus DIR       seed inputs; inputs that reach new edges are added\n"
		"  --crashes DIR      where each new crash's input is written\n"
		"  --crash-snapshots  also save the machine at each new crash, as\n"
		"                     DIR/crash-HASH.vmsnap (vmrun restore runs it)\n"
		"  --time SECONDS     stop after this long (counted from the checkpoint,\n"
		"                     which the guest must reach within ten minutes)\n"
		"  --iterations N     stop after N executions\n"
		"  --max-crashes N    stop once N different crashes are saved\n"
		"  --timeout-ms N     an execution running longer is a time-out (1000)\n"
		"  --verify-reset     after each reset compare all memory and state with\n"
		"                     the checkpoint; stop at the first difference\n"
		"  --seed N           the mutator's random seed (default: from the clock)\n"
		"  --jobs N           N processes (one per core) fuzzing from the one\n"
		"                     checkpoint: its memory is shared copy-on-write,\n"
		"                     each resets only its own writes; --iterations is\n"
		"                     shared out, the rest applies to each\n"
		"  --afl              be driven by afl-fuzz (its fork-server protocol and\n"
		"                     shared coverage map); the input comes from stdin or,\n"
		"                     with --input FILE (afl-fuzz's @@), from FILE\n"
		"  -v, --verbose      more messages\n"
		"  -h, --help         this text\n"
		"\n"
		"The last line of a run is 'fuzz: execs=N resets_per_s=R crashes=C ...'.\n"
		"exit status: 0 done (crashes or not), 1 VMM error or the guest never\n"
		"reached its checkpoint, 2 bad arguments.\n");
}

/* The checkpoint must come within a while of the start. */
static void attach_deadline(struct machine *m, int fd, void *opaque)
{
	struct fz *z = opaque;
	uint64_t v;

	if (read(fd, &v, sizeof(v)) < 0)
		return;
	machine_unwatch_fd(m, fd);
	if (!z->ready)
		vm_stop_detail(machine_vm(m), VM_EXIT_ERROR,
			       "the guest did not reach its harness checkpoint "
			       "(no work=fuzz, or not a harness guest?)");
}

static int parse_u64_arg(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || end == s || *end || *s == '-' ? -EINVAL : 0;
}

static int make_machine(struct machine_config *cfg, const char *snapshot,
			struct machine **m, char *err, size_t errlen)
{
	struct vmsnap_restore_opts ro = { 0 };
	struct vmsnap_stats vs;

	if (!snapshot)
		return machine_create(cfg, m, err, errlen);
	ro.console = cfg->console;
	return vmsnap_restore_file(snapshot, &ro, m, &vs, err, errlen);
}

int cmd_fuzz(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "snapshot", required_argument, NULL, 's' },
		{ "mem", required_argument, NULL, 'm' },
		{ "rng", no_argument, NULL, 'r' },
		{ "console", required_argument, NULL, 'o' },
		{ "dirty-log", no_argument, NULL, 'L' },
		{ "no-hold", no_argument, NULL, 'H' },
		{ "corpus", required_argument, NULL, 'C' },
		{ "crashes", required_argument, NULL, 'X' },
		{ "crash-snapshots", no_argument, NULL, 'S' },
		{ "time", required_argument, NULL, 't' },
		{ "iterations", required_argument, NULL, 'n' },
		{ "max-crashes", required_argument, NULL, 'M' },
		{ "timeout-ms", required_argument, NULL, 'T' },
		{ "verify-reset", no_argument, NULL, 'V' },
		{ "seed", required_argument, NULL, 'e' },
		{ "afl", no_argument, NULL, 'A' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "input", required_argument, NULL, 'i' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct machine_config cfg = { .mem = 256ULL << 20,
				      .cpus = 1,
				      .console = "none",
				      .dirty = DIRTY_MODE_RING,
				      .dirty_ring_size = FUZZ_RING_ENTRIES };
	struct fuzzer_opts fo = { .timeout_ms = 1000 };
	const char *kernel_path = NULL, *snapshot = NULL;
	struct itimerspec its = { .it_value = { 600, 0 } };
	bool cmdline_set = false, dirty_log = false;
	struct fz *z;
	void *kdata = NULL;
	size_t ksize = 0;
	uint64_t v;
	char err[512];
	int c, ret, verbose = 0, signo, tfd;
	enum vm_exit_reason r;

	z = calloc(1, sizeof(*z));
	if (!z)
		return EXIT_VMM_ERROR;
	z->rng = vmsnap_now_ns() | 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			kernel_path = optarg;
			break;
		case 'c':
			cfg.cmdline = optarg;
			cmdline_set = true;
			break;
		case 's':
			snapshot = optarg;
			break;
		case 'm':
			if (parse_size(optarg, &cfg.mem) < 0) {
				die_msg("--mem '%s': expected a size such as 512M or 2G",
					optarg);
				goto usage;
			}
			break;
		case 'r':
			cfg.rng = true;
			break;
		case 'o':
			cfg.console = optarg;
			break;
		case 'L':
			dirty_log = true;
			break;
		case 'H':
			fo.no_hold = true;
			break;
		case 'C':
			z->corpus = optarg;
			break;
		case 'X':
			z->crashes = optarg;
			break;
		case 'S':
			z->crash_snaps = true;
			break;
		case 't':
			if (parse_u64_arg(optarg, &v) || !v || v > 1000000) {
				die_msg("--time '%s': expected 1..1000000 seconds",
					optarg);
				goto usage;
			}
			z->time_ns = v * 1000000000ULL;
			break;
		case 'n':
			if (parse_u64_arg(optarg, &z->max_execs) ||
			    !z->max_execs) {
				die_msg("--iterations '%s': expected a count of 1 or more",
					optarg);
				goto usage;
			}
			break;
		case 'M':
			if (parse_u64_arg(optarg, &z->max_crashes) ||
			    !z->max_crashes) {
				die_msg("--max-crashes '%s': expected a count of 1 or more",
					optarg);
				goto usage;
			}
			break;
		case 'T':
			if (parse_uint(optarg, 3600000, &fo.timeout_ms)) {
				die_msg("--timeout-ms '%s': expected 1..3600000",
					optarg);
				goto usage;
			}
			break;
		case 'V':
			fo.verify_reset = true;
			break;
		case 'e':
			if (parse_u64_arg(optarg, &z->rng)) {
				die_msg("--seed '%s': expected a number",
					optarg);
				goto usage;
			}
			z->rng = z->rng * 2 + 1;
			break;
		case 'A':
			z->afl = true;
			break;
		case 'j':
			if (parse_uint(optarg, 256, &z->jobs)) {
				die_msg("--jobs '%s': expected 1..256", optarg);
				goto usage;
			}
			break;
		case 'i':
			z->input_path = optarg;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			fuzz_usage(stdout);
			free(z);
			return 0;
		default:
			fuzz_usage(stderr);
			goto usage;
		}
	}
	if (optind < argc) {
		die_msg("fuzz: unexpected argument '%s'", argv[optind]);
		goto usage;
	}
	log_set_level(verbose >= 2 ? LOG_DEBUG : verbose ? LOG_INFO : LOG_WARN);
	if (!z->afl && (!z->corpus || !z->crashes)) {
		die_msg("fuzz: --corpus DIR and --crashes DIR are needed "
			"(or --afl, under afl-fuzz)");
		goto usage;
	}
	if (z->afl && (z->corpus || z->crashes || z->time_ns || z->max_execs ||
		       z->max_crashes)) {
		die_msg("fuzz: with --afl, afl-fuzz has the corpus and decides "
			"when to stop: no --corpus, --crashes, --time, "
			"--iterations or --max-crashes");
		goto usage;
	}
	if (z->afl && !fuzz_afl_pipes()) {
		die_msg("fuzz --afl: no afl-fuzz fork-server pipes on fds %d "
			"and %d; run it as afl-fuzz -i IN -o OUT -- vmrun fuzz "
			"--afl",
			FUZZ_AFL_CTL_FD, FUZZ_AFL_ST_FD);
		goto usage;
	}
	if (z->corpus) {
		ret = fuzz_load_corpus(z);
		if (ret < 0) {
			die_msg("--corpus %s: %s", z->corpus, strerror(-ret));
			goto usage;
		}
	}
	if (z->crashes && access(z->crashes, W_OK) < 0) {
		die_msg("--crashes %s: %s", z->crashes, strerror(errno));
		goto usage;
	}
	if (snapshot && (kernel_path || cmdline_set)) {
		die_msg("fuzz: --snapshot restores a machine: no --kernel or "
			"--cmdline with it");
		goto usage;
	}
	if (!snapshot &&
	    config_kernel(&cfg, kernel_path, KBOOT_AUTO, DEFAULT_CMDLINE,
			  cmdline_set, &kdata, &ksize))
		goto usage;
	if (dirty_log)
		cfg.dirty = DIRTY_MODE_LOG;
	z->tty = !z->afl && isatty(STDERR_FILENO);

	ret = make_machine(&cfg, snapshot, &z->m, err, sizeof(err));
	if (ret < 0 && !dirty_log && !snapshot &&
	    cfg.dirty == DIRTY_MODE_RING && ret != -EINVAL) {
		/* No dirty ring in this KVM: the log does it, at a cost. */
		pr_info("fuzz: no dirty ring (%s); using the dirty log", err);
		cfg.dirty = DIRTY_MODE_LOG;
		ret = make_machine(&cfg, snapshot, &z->m, err, sizeof(err));
	}
	if (ret < 0) {
		die_msg("%s", err);
		ret = ret == -EINVAL || ret == -ENOENT || ret == -EBADMSG ||
				      ret == -EPROTONOSUPPORT ?
			      EXIT_USAGE :
			      EXIT_VMM_ERROR;
		goto out_free;
	}
	err[0] = 0;
	ret = fuzzer_create(z->m, &fo, z->afl ? &fuzz_afl_ops : &fuzz_sa_ops, z,
			    &z->f, err, sizeof(err));
	if (ret < 0) {
		die_msg("%s", err[0] ? err : strerror(-ret));
		machine_destroy(z->m);
		ret = ret == -EINVAL ? EXIT_USAGE : EXIT_VMM_ERROR;
		goto out_free;
	}
	/* The guest gets ten minutes to reach its checkpoint. */
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	if (tfd >= 0 && (timerfd_settime(tfd, 0, &its, NULL) < 0 ||
			 machine_watch_fd(z->m, tfd, attach_deadline, z) < 0)) {
		close(tfd);
		tfd = -1;
	}
	r = machine_run(z->m, &signo);
	if (tfd >= 0)
		close(tfd);
	ret = 0;
	if (fuzzer_error(z->f)[0]) {
		die_msg("%s", fuzzer_error(z->f));
		ret = EXIT_VMM_ERROR;
	} else if (!z->ready) {
		die_msg("the guest stopped before its harness checkpoint: %s",
			vm_exit_detail(machine_vm(z->m)));
		ret = EXIT_VMM_ERROR;
	} else if (r != VM_EXIT_REQUESTED) {
		die_msg("%s", vm_exit_detail(machine_vm(z->m)));
		ret = EXIT_VMM_ERROR;
	} else if (signo) {
		ret = 128 + signo;
	}
	if (!ret && z->ready && z->jobs > 1) {
		const struct machine_config *mc = machine_config(z->m);
		struct machine_config keep = { .mem = mc->mem,
					       .rng = mc->rng,
					       .dirty = mc->dirty,
					       .dirty_ring_size =
						       mc->dirty_ring_size };
		struct harness_desc d;
		struct checkpoint *ck = fuzzer_take_checkpoint(z->f, &d);

		if (mc->nr_disks || mc->nr_nets) {
			die_msg("fuzz --jobs: the machine has disks or network "
				"cards, which jobs cannot share");
			ret = EXIT_USAGE;
			checkpoint_free(ck);
			ck = NULL;
		} else {
			checkpoint_detach(ck);
			fuzzer_free(z->f);
			z->f = NULL;
			machine_destroy(z->m);
			z->m = NULL;
			ret = fuzz_run_jobs(z, &keep, ck, &d, &fo);
			checkpoint_free(ck);
		}
	} else if (z->ready && !z->afl) {
		fuzz_print_status(z, true);
	}
	fuzz_afl_end(z);
	if (z->f)
		fuzzer_free(z->f);
	if (z->m)
		machine_destroy(z->m);
	goto out_free;

usage:
	ret = EXIT_USAGE;
out_free:
	if (kdata)
		munmap(kdata, ksize);
	for (unsigned int i = 0; i < z->nq; i++)
		free(z->queue[i].data);
	free(z->virgin);
	free(z);
	return ret;
}
