/* SPDX-License-Identifier: MIT */
/* vmrun restore: a VM from a snapshot image. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernel/machine.h"
#include "kernel/util/log.h"
#include "snapshot/vmsnap.h"
#include "vmrun/ctl.h"
#include "vmrun/vmrun.h"

static void restore_usage(FILE *f)
{
	fprintf(f,
		"usage: vmrun restore FILE [OPTIONS]\n"
		"\n"
		"Runs the VM saved in FILE (by 'vmrun ctl SOCKET save FILE') from\n"
		"where it was saved: same vCPUs, memory, devices and disks. The\n"
		"whole image is checked (format, version, checksums, this host's\n"
		"CPU features, the disks) before any vCPU runs; a bad image is\n"
		"refused with exit status 2 and nothing is started. An incremental\n"
		"image (save --incremental) is restored with its chain of bases:\n"
		"each must be where it was saved, or beside the image naming it,\n"
		"and have the content hash recorded; each page comes from the\n"
		"newest image that holds it.\n"
		"\n"
		"With --lazy the guest runs as soon as its state is loaded: each\n"
		"page is read from the image at its first touch and the rest in\n"
		"the background (a line on stderr says when memory is complete).\n"
		"The image's structure is checked first as above, but the data of\n"
		"each page batch only when it is read: a batch found corrupt then\n"
		"stops the VM with an error (exit status 1). 'vmrun image verify'\n"
		"checks every byte beforehand.\n"
		"\n"
		"  --console SPEC     stdio (default), file:PATH or none\n"
		"  --disk FILE        use FILE for the next saved disk, in order\n"
		"                     (default: the path recorded at the save)\n"
		"  --disk-changed-ok  use disks even if they changed since the save\n"
		"  --net SPEC         the next saved network card's back end, in\n"
		"                     order: tap:NAME[,bridge=BR] or fd:N (default:\n"
		"                     the saved spec)\n"
		"  --ctl PATH         serve a control socket at PATH (see vmrun ctl);\n"
		"                     dirty tracking starts with the restore, so a\n"
		"                     save --incremental can go over FILE\n"
		"  --lazy             run before memory is loaded: pages arrive on\n"
		"                     first touch and in the background (needs\n"
		"                     userfaultfd and a regular file)\n"
		"  --lazy=demand      the same without the background fill: only\n"
		"                     pages the guest touches are read (a save\n"
		"                     through --ctl reads the rest first)\n"
		"  --json             print the restore summary as JSON (stderr)\n"
		"  -v, --verbose      more messages (repeat for debug)\n"
		"  -h, --help         this text\n"
		"\n"
		"exit status: as for 'vmrun run', and 2 for a bad, corrupt or\n"
		"unknown image, or one this host cannot run.\n");
}

struct progress {
	bool tty;
	uint64_t t0;
	int last;
	const char *path;
	bool json;
};

/* A bar on a terminal once the restore has taken more than 200 ms. */
static void show_progress(void *opaque, uint64_t done, uint64_t total)
{
	struct progress *p = opaque;
	int pct = total ? (int)(done * 100 / total) : 100;

	if (!p->tty || pct == p->last ||
	    (p->last < 0 && vmsnap_now_ns() - p->t0 < 200000000ULL))
		return;
	p->last = pct;
	fprintf(stderr, "\rrestoring: [%-40.*s] %3d%%", pct * 40 / 100,
		"========================================", pct);
	if (pct == 100)
		fputc('\n', stderr);
}

/* From the loader thread of a lazy restore, when memory is complete. */
static void lazy_done(void *opaque, const struct vmsnap_lazy_stats *ls,
		      const char *err)
{
	const struct progress *p = opaque;

	if (err)
		return; /* the VM stops with the reason */
	if (p->json) {
		fprintf(stderr,
			"{\"lazy_complete\":true,\"ms\":%.3f,\"faults\":%llu,"
			"\"fault_pages\":%llu,\"fill_pages\":%llu,"
			"\"batches\":%llu}\n",
			(double)ls->ns / 1e6, (unsigned long long)ls->faults,
			(unsigned long long)ls->fault_pages,
			(unsigned long long)ls->fill_pages,
			(unsigned long long)ls->batches);
		return;
	}
	fprintf(stderr,
		"vmrun: restore %s: memory complete %.0f ms after the start: %llu pages on %llu first touches, %llu in the background\n",
		p->path, (double)ls->ns / 1e6,
		(unsigned long long)ls->fault_pages,
		(unsigned long long)ls->faults,
		(unsigned long long)ls->fill_pages);
}

static void print_summary(const char *path, const struct vmsnap_stats *st,
			  bool lazy, bool json)
{
	if (json) {
		fprintf(stderr, "{\"restored\":");
		json_str(stderr, path);
		fprintf(stderr,
			",\"bytes\":%llu,\"mem_bytes\":%llu,\"pages\":%llu,"
			"\"zero_pages\":%llu,\"ms\":%.3f,\"links\":%u,"
			"\"lazy\":%s,\"content_hash\":\"%016llx\"}\n",
			(unsigned long long)st->bytes,
			(unsigned long long)st->mem_bytes,
			(unsigned long long)st->pages,
			(unsigned long long)st->zero_pages,
			(double)st->ns / 1e6, st->links,
			lazy ? "true" : "false", (unsigned long long)st->hash);
		return;
	}
	if (lazy) {
		fprintf(stderr,
			"vmrun: restored %s%s lazily: %llu MiB of guest memory, %llu pages (%llu zero) indexed, running after %.1f ms\n",
			path, st->links > 1 ? " and its bases" : "",
			(unsigned long long)(st->mem_bytes >> 20),
			(unsigned long long)st->pages,
			(unsigned long long)st->zero_pages,
			(double)st->ns / 1e6);
		return;
	}
	fprintf(stderr,
		"vmrun: restored %s%s: %llu MiB of guest memory, %llu pages (%llu zero), %.1f MiB read in %.0f ms\n",
		path, st->links > 1 ? " and its bases" : "",
		(unsigned long long)(st->mem_bytes >> 20),
		(unsigned long long)st->pages,
		(unsigned long long)st->zero_pages,
		(double)st->bytes / 1048576.0, (double)st->ns / 1e6);
}

int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "console", required_argument, NULL, 'o' },
		{ "disk", required_argument, NULL, 'd' },
		{ "disk-changed-ok", no_argument, NULL, 'D' },
		{ "net", required_argument, NULL, 'n' },
		{ "ctl", required_argument, NULL, 'C' },
		{ "lazy", optional_argument, NULL, 'L' },
		{ "json", no_argument, NULL, 'j' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct vmsnap_restore_opts o = { 0 };
	struct progress prog = { .tty = isatty(STDERR_FILENO), .last = -1 };
	unsigned int nr_disks = 0, nr_nets = 0;
	const char *ctl_path = NULL, *path;
	struct vmsnap_chain chain = { 0 };
	struct vmsnap_stats st;
	struct machine *m;
	bool json = false;
	int c, ret, verbose = 0;
	char err[512];

	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 'o':
			o.console = optarg;
			break;
		case 'd':
			if (nr_disks == MACHINE_MAX_DISKS) {
				die_msg("at most %d --disk options",
					MACHINE_MAX_DISKS);
				return EXIT_USAGE;
			}
			o.disks[nr_disks++] = optarg;
			break;
		case 'D':
			o.disk_changed_ok = true;
			break;
		case 'n':
			if (nr_nets == MACHINE_MAX_NETS) {
				die_msg("at most %d --net options",
					MACHINE_MAX_NETS);
				return EXIT_USAGE;
			}
			o.nets[nr_nets++] = optarg;
			break;
		case 'C':
			ctl_path = optarg;
			break;
		case 'L':
			o.lazy = true;
			if (optarg && !strcmp(optarg, "demand")) {
				o.lazy_demand = true;
			} else if (optarg) {
				die_msg("--lazy=%s: the only mode is 'demand'",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'j':
			json = true;
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			restore_usage(stdout);
			return 0;
		default:
			restore_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind + 1 != argc) {
		die_msg(optind == argc ? "restore: expected an image FILE" :
					 "restore: unexpected argument '%s'",
			argv[optind + 1]);
		return EXIT_USAGE;
	}
	path = argv[optind];
	log_set_level(verbose >= 2 ? LOG_DEBUG : verbose ? LOG_INFO : LOG_WARN);

	prog.t0 = vmsnap_now_ns();
	prog.path = path;
	prog.json = json;
	o.progress = show_progress;
	o.lazy_done = lazy_done;
	o.opaque = &prog;
	/* Saves come through the control socket: track for incremental ones. */
	o.track_dirty = ctl_path != NULL;
	ret = vmsnap_restore_file(path, &o, &m, &st, err, sizeof(err));
	if (ret < 0) {
		if (prog.last >= 0)
			fputc('\n', stderr);
		die_msg("restore %s: %s", path, err);
		return ret == -EINVAL || ret == -EBADMSG ||
				       ret == -EPROTONOSUPPORT ||
				       ret == -ENOENT || ret == -EACCES ?
			       EXIT_USAGE :
			       EXIT_VMM_ERROR;
	}
	print_summary(path, &st, o.lazy, json);
	chain.valid = realpath(path, chain.path) != NULL;
	chain.hash = st.hash;
	chain.links = st.links;
	return vmrun_serve(m, ctl_path, &chain);
}
