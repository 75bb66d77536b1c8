/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <glob.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernel/machine.h"
#include "kernel/util/log.h"
#include "kernel/x86/loader.h"
#include "vmrun/ctl.h"
#include "vmrun/migrate_cmd.h"
#include "vmrun/vmrun.h"

#define DEFAULT_CMDLINE "work=dirty mib=64 rate=200 pattern=seq tick_ms=1000"
/* --linux: the kernel's own options, then the init's (docs/linux-guest.md). */
#define LINUX_CMDLINE "console=ttyS0 panic=-1"

static void run_usage(FILE *f)
{
	fprintf(f,
		"usage: vmrun run [OPTIONS]\n"
		"\n"
		"Boots a guest and runs it until it powers off, resets or faults,\n"
		"or until Ctrl-C / SIGTERM (which stop it cleanly).\n"
		"\n"
		"  --kernel FILE      a Linux bzImage (such as Debian's vmlinuz), a\n"
		"                     Multiboot v1 image, or an ELF with a PVH or vmrun\n"
		"                     entry note (default: the built-in reference guest)\n"
		"  --initrd FILE      the initramfs for a Linux kernel\n"
		"  --kernel-entry E   how a bzImage boots: auto (default) through the\n"
		"                     PVH entry of the vmlinux inside when it has one,\n"
		"                     unpacked on the host (xz, zstd, lz4) and cached\n"
		"                     in kernels/ under $VMRUN_CACHE or ~/.cache/vmrun,\n"
		"                     skipping the kernel's own decompressor; else its\n"
		"                     64-bit entry; pvh (that way or fail); bzimage\n"
		"                     (its own 64-bit entry, the kernel unpacking itself)\n"
		"  --linux            boot the project's Linux test guest: Debian's kernel\n"
		"                     and an initramfs made by tests/guest/linux/prepare.sh\n"
		"                     (found in $VMRUN_CACHE or ~/.cache/vmrun); the\n"
		"                     kernel's vmlinux through its PVH entry (vmlinuz\n"
		"                     if there is none); --cmdline is appended to\n"
		"                     \"" LINUX_CMDLINE "\"\n"
		"  --cmdline STRING   the guest's command line (default for the reference\n"
		"                     guest: \"" DEFAULT_CMDLINE "\")\n"
		"  --mem SIZE         guest RAM, e.g. 512M or 2G (default 256M)\n"
		"  --cpus N           vCPUs, 1..16 (default 1)\n"
		"  --disk FILE        a raw disk image as virtio-blk (repeatable)\n"
		"  --net SPEC         virtio-net: tap:NAME[,bridge=BR] (repeatable)\n"
		"  --rng              add a virtio-rng device\n"
		"  --console SPEC     stdio (default), file:PATH or none\n"
		"  --ctl PATH         serve a control socket at PATH (see vmrun ctl)\n"
		"  --incoming URI     run no kernel: wait for a live migration on URI\n"
		"                     (tcp:HOST:PORT, tcp port 0 for any free one,\n"
		"                     unix:PATH, or fd:N, a connected socket) and run\n"
		"                     the machine that arrives, with this command\n"
		"                     line's --console, --disk and --net back ends;\n"
		"                     --mem and --cpus, if given, must match it\n"
		"  --dirty-ring       use the dirty ring (not the dirty log) for tracking\n"
		"  --track-dirty MS   track dirty pages from the start and harvest them\n"
		"                     every MS ms, as a live migration would (to\n"
		"                     measure what tracking costs the guest)\n"
		"  -v, --verbose      more messages (repeat for debug)\n"
		"  -h, --help         this text\n"
		"\n"
		"exit status: 0 guest powered off (or stopped through --ctl), 1 VMM\n"
		"error, 2 bad arguments or image, 3 guest reset, 4 guest triple\n"
		"fault, 5 KVM internal error, 128+N stopped by signal N.\n");
}

/* Parses 512, 512M, 2G, 1024K (plain numbers are MiB). */
int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1ULL << 20;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	if (*end) {
		switch (*end) {
		case 'k':
		case 'K':
			mul = 1ULL << 10;
			break;
		case 'm':
		case 'M':
			mul = 1ULL << 20;
			break;
		case 'g':
		case 'G':
			mul = 1ULL << 30;
			break;
		default:
			return -EINVAL;
		}
		if (end[1] && strcmp(end + 1, "iB") && strcmp(end + 1, "B"))
			return -EINVAL;
	}
	if (v > (1ULL << 50) / mul)
		return -ERANGE;
	*out = v * mul;
	return 0;
}

/* Parses a decimal in 1..@max; returns 0 or -EINVAL. */
int parse_uint(const char *s, unsigned long max, unsigned int *out)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end || end == s || *s == '-' || !v || v > max)
		return -EINVAL;
	*out = (unsigned int)v;
	return 0;
}

int read_file(const char *path, void **data, size_t *size)
{
	struct stat st;
	void *p;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	if (st.st_size == 0) {
		close(fd);
		*data = NULL;
		*size = 0;
		return 0;
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return -errno;
	*data = p;
	*size = (size_t)st.st_size;
	return 0;
}

int parse_kernel_boot(const char *s, enum kernel_boot *out)
{
	if (!strcmp(s, "auto"))
		*out = KBOOT_AUTO;
	else if (!strcmp(s, "pvh"))
		*out = KBOOT_PVH;
	else if (!strcmp(s, "bzimage"))
		*out = KBOOT_BZIMAGE;
	else
		return -EINVAL;
	return 0;
}

/*
 * The bzImage at @path (parsed into @img): its vmlinux through the PVH
 * entry, unless @boot says otherwise or (AUTO) it cannot boot that way.
 * Returns 0 (with *@kdata, *@ksize replaced when unpacked) or EXIT_USAGE
 * after saying why.
 */
static int config_bzimage(const char *path, const struct kernel_image *img,
			  enum kernel_boot boot, void **kdata, size_t *ksize)
{
	char why[512];
	void *data;
	size_t n;
	int ret;

	/* PVM runs only kernels built as PVM guests; say so before a stock
	 * kernel crawls through PVM's instruction emulator. */
	if (!access("/sys/module/kvm_pvm", F_OK) &&
	    access("/sys/module/kvm_intel", F_OK) &&
	    access("/sys/module/kvm_amd", F_OK))
		pr_warn("this host's KVM is PVM: a stock Linux kernel needs VMX or SVM and will not boot here in reasonable time (a PVM guest kernel would)");
	if (boot == KBOOT_BZIMAGE)
		return 0;
	ret = kernel_unpacked(path, img, &data, &n, why, sizeof(why));
	if (ret == -ENOTSUP && boot == KBOOT_AUTO) {
		pr_info("%s: booting through its own 64-bit entry: %s", path,
			why);
		return 0;
	}
	if (ret < 0) {
		die_msg("--kernel %s: %s%s", path, why,
			ret == -ENOTSUP ?
				" (--kernel-entry bzimage boots it as it is)" :
				"");
		return EXIT_USAGE;
	}
	munmap(*kdata, *ksize);
	*kdata = data;
	*ksize = n;
	return 0;
}

int config_kernel(struct machine_config *cfg, const char *path,
		  enum kernel_boot boot, const char *default_cmdline,
		  bool cmdline_set, void **kdata, size_t *ksize)
{
	struct kernel_image img;
	int ret;

	if (path) {
		ret = read_file(path, kdata, ksize);
		if (ret < 0) {
			die_msg("--kernel %s: %s", path,
				ret == -EINVAL ? "not a regular file" :
						 strerror(-ret));
			return EXIT_USAGE;
		}
		/* A bzImage that does not parse is refused, with the
		 * parser's reason, where the machine is built. */
		if (kernel_parse(*kdata, *ksize, &img, NULL, 0) == 0 &&
		    img.kind == KERNEL_ENTRY_LINUX64 &&
		    config_bzimage(path, &img, boot, kdata, ksize))
			return EXIT_USAGE;
		cfg->kernel = *kdata;
		cfg->kernel_size = *ksize;
		cfg->kernel_name = path;
		return 0;
	}
	if (!builtin_guest) {
		die_msg("this build has no built-in guest; use --kernel");
		return EXIT_USAGE;
	}
	cfg->kernel = builtin_guest;
	cfg->kernel_size = *builtin_guest_size;
	cfg->kernel_name = "the built-in reference guest";
	if (!cmdline_set)
		cfg->cmdline = default_cmdline;
	return 0;
}

/*
 * --linux: the newest prepared Linux guest, $VMRUN_LINUX_DIR or
 * ${VMRUN_CACHE:-${XDG_CACHE_HOME:-~/.cache}/vmrun}/linux-* /, holding
 * vmlinuz and initrd.img.
 */
static int find_linux_guest(char *dir, size_t len)
{
	const char *env = getenv("VMRUN_LINUX_DIR");
	char cache[PATH_MAX], pat[PATH_MAX + 32];
	glob_t g;
	int ret;

	if (env) {
		snprintf(dir, len, "%s", env);
		return 0;
	}
	if (vmrun_cache_dir(cache, sizeof(cache)) < 0) {
		die_msg("--linux: no cache directory ($VMRUN_CACHE, $XDG_CACHE_HOME or $HOME) to find the prepared Linux guest in");
		return -ENOENT;
	}
	snprintf(pat, sizeof(pat), "%s/linux-*/initrd.img", cache);
	ret = glob(pat, 0, NULL, &g);
	if (ret || !g.gl_pathc) {
		if (!ret)
			globfree(&g);
		die_msg("--linux: no prepared Linux guest (%s); make one with: bash tests/guest/linux/prepare.sh",
			pat);
		return -ENOENT;
	}
	snprintf(dir, len, "%s", g.gl_pathv[g.gl_pathc - 1]);
	globfree(&g);
	*strrchr(dir, '/') = 0;
	return 0;
}

static int exit_code(enum vm_exit_reason r, int signo)
{
	switch (r) {
	case VM_EXIT_POWEROFF:
		return EXIT_POWEROFF;
	case VM_EXIT_RESET:
		return EXIT_GUEST_RESET;
	case VM_EXIT_SHUTDOWN:
		return EXIT_TRIPLE_FAULT;
	case VM_EXIT_INTERNAL:
		return EXIT_KVM_INTERNAL;
	case VM_EXIT_REQUESTED:
		/* By signal, or by a stop on the control socket. */
		return signo ? 128 + signo : EXIT_POWEROFF;
	default:
		return EXIT_VMM_ERROR;
	}
}

int cmd_run(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' },
		{ "initrd", required_argument, NULL, 'i' },
		{ "kernel-entry", required_argument, NULL, 'E' },
		{ "linux", no_argument, NULL, 'L' },
		{ "cmdline", required_argument, NULL, 'c' },
		{ "mem", required_argument, NULL, 'm' },
		{ "cpus", required_argument, NULL, 'p' },
		{ "disk", required_argument, NULL, 'd' },
		{ "net", required_argument, NULL, 'n' },
		{ "rng", no_argument, NULL, 'r' },
		{ "console", required_argument, NULL, 'o' },
		{ "ctl", required_argument, NULL, 'C' },
		{ "dirty-ring", no_argument, NULL, 'R' },
		{ "track-dirty", required_argument, NULL, 'T' },
		{ "incoming", required_argument, NULL, 'I' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct machine_config cfg = { .mem = 256ULL << 20,
				      .cpus = 1,
				      .console = "stdio" };
	const char *kernel_path = NULL, *ctl_path = NULL, *initrd_path = NULL,
		   *incoming = NULL;
	bool cmdline_set = false, linux_guest = false, mem_set = false,
	     cpus_set = false, others = false;
	struct machine *m;
	void *kdata = NULL, *idata = NULL;
	size_t ksize = 0, isize = 0;
	char err[512], ldir[PATH_MAX], lkernel[PATH_MAX + 16],
		linitrd[PATH_MAX + 16], lcmdline[4096];
	enum kernel_boot boot = KBOOT_AUTO;
	int c, ret, verbose = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 'k':
			kernel_path = optarg;
			others = true;
			break;
		case 'i':
			initrd_path = optarg;
			others = true;
			break;
		case 'E':
			if (parse_kernel_boot(optarg, &boot)) {
				die_msg("--kernel-entry '%s': expected auto, pvh or bzimage",
					optarg);
				return EXIT_USAGE;
			}
			others = true;
			break;
		case 'L':
			linux_guest = true;
			others = true;
			break;
		case 'c':
			cfg.cmdline = optarg;
			cmdline_set = true;
			others = true;
			break;
		case 'I':
			incoming = optarg;
			break;
		case 'm':
			mem_set = true;
			if (parse_size(optarg, &cfg.mem) < 0) {
				die_msg("--mem '%s': expected a size such as 512M or 2G",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'p':
			cpus_set = true;
			if (parse_uint(optarg, MACHINE_MAX_CPUS, &cfg.cpus)) {
				die_msg("--cpus '%s': expected 1..%d", optarg,
					MACHINE_MAX_CPUS);
				return EXIT_USAGE;
			}
			break;
		case 'd':
			if (cfg.nr_disks == MACHINE_MAX_DISKS) {
				die_msg("at most %d --disk options",
					MACHINE_MAX_DISKS);
				return EXIT_USAGE;
			}
			cfg.disks[cfg.nr_disks++] = optarg;
			break;
		case 'n':
			if (cfg.nr_nets == MACHINE_MAX_NETS) {
				die_msg("at most %d --net options",
					MACHINE_MAX_NETS);
				return EXIT_USAGE;
			}
			cfg.nets[cfg.nr_nets++] = optarg;
			break;
		case 'r':
			cfg.rng = true;
			others = true;
			break;
		case 'o':
			cfg.console = optarg;
			break;
		case 'C':
			ctl_path = optarg;
			break;
		case 'R':
			cfg.dirty = DIRTY_MODE_RING;
			others = true;
			break;
		case 'T':
			others = true;
			if (parse_uint(optarg, 60000, &cfg.track_ms)) {
				die_msg("--track-dirty '%s': expected 1..60000 (ms)",
					optarg);
				return EXIT_USAGE;
			}
			break;
		case 'v':
			verbose++;
			break;
		case 'h':
			run_usage(stdout);
			return 0;
		default:
			run_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		die_msg("run: unexpected argument '%s'", argv[optind]);
		return EXIT_USAGE;
	}
	log_set_level(verbose >= 2 ? LOG_DEBUG : verbose ? LOG_INFO : LOG_WARN);

	if (incoming && others) {
		die_msg("--incoming: the kernel, its command line and the devices come with the machine; only --mem, --cpus, --disk, --net, --console and --ctl go with it");
		return EXIT_USAGE;
	}
	if (incoming)
		return run_incoming(incoming, &cfg, mem_set, cpus_set,
				    ctl_path);
	if (linux_guest) {
		if (kernel_path || initrd_path) {
			die_msg("--linux brings its own kernel and initramfs: no --kernel or --initrd with it");
			return EXIT_USAGE;
		}
		if (find_linux_guest(ldir, sizeof(ldir)))
			return EXIT_USAGE;
		/* The ELF inside vmlinuz (PVH entry): no decompression. */
		snprintf(lkernel, sizeof(lkernel), "%s/vmlinux", ldir);
		if (access(lkernel, R_OK))
			snprintf(lkernel, sizeof(lkernel), "%s/vmlinuz", ldir);
		snprintf(linitrd, sizeof(linitrd), "%s/initrd.img", ldir);
		kernel_path = lkernel;
		initrd_path = linitrd;
		if ((size_t)snprintf(
			    lcmdline, sizeof(lcmdline), "%s %s", LINUX_CMDLINE,
			    cmdline_set ? cfg.cmdline : DEFAULT_CMDLINE) >=
		    sizeof(lcmdline)) {
			die_msg("--cmdline: too long");
			return EXIT_USAGE;
		}
		cfg.cmdline = lcmdline;
		cmdline_set = true;
	}
	if (initrd_path) {
		ret = read_file(initrd_path, &idata, &isize);
		if (ret < 0 || !isize) {
			die_msg("--initrd %s: %s", initrd_path,
				ret == -EINVAL ? "not a regular file" :
				!ret	       ? "empty file" :
						 strerror(-ret));
			return EXIT_USAGE;
		}
		cfg.initrd = idata;
		cfg.initrd_size = isize;
		cfg.initrd_name = initrd_path;
	}
	if (config_kernel(&cfg, kernel_path, boot, DEFAULT_CMDLINE, cmdline_set,
			  &kdata, &ksize)) {
		if (idata)
			munmap(idata, isize);
		return EXIT_USAGE;
	}

	ret = machine_create(&cfg, &m, err, sizeof(err));
	/* The kernel and initramfs are in guest memory now (or never will
	 * be); the machine keeps no pointer to either. */
	if (kdata)
		munmap(kdata, ksize);
	if (idata)
		munmap(idata, isize);
	if (ret < 0) {
		die_msg("%s", err);
		/* Bad or missing input is the user's to fix: status 2. */
		return ret == -EINVAL || ret == -ENOTSUP || ret == -ERANGE ||
				       ret == -ENOENT || ret == -EACCES ||
				       ret == -ENODEV ?
			       EXIT_USAGE :
			       EXIT_VMM_ERROR;
	}
	return vmrun_serve(m, ctl_path, NULL);
}

int vmrun_serve(struct machine *m, const char *ctl_path,
		const struct vmsnap_chain *chain)
{
	struct ctl *ctl = NULL;
	enum vm_exit_reason r;
	char err[512];
	int ret, signo;

	if (ctl_path) {
		ret = ctl_open(m, ctl_path, machine_config(m)->mem, chain, &ctl,
			       err, sizeof(err));
		if (ret < 0) {
			die_msg("%s", err);
			machine_destroy(m);
			return ret == -ENOMEM ? EXIT_VMM_ERROR : EXIT_USAGE;
		}
	}
	r = machine_run(m, &signo);
	ctl_close(ctl);
	ret = exit_code(r, signo);
	if (r != VM_EXIT_POWEROFF)
		die_msg("%s", vm_exit_detail(machine_vm(m)));
	machine_destroy(m);
	return ret;
}
