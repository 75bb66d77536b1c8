/* SPDX-License-Identifier: MIT */
/*
 * vmrun: the command line. The only place in the project that exits.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kernel/util/compiler.h"
#include "vmrun/ctl.h"
#include "vmrun/vmrun.h"

static const struct cmd cmd_table[] = {
	{ "run", cmd_run, "boot a guest (the reference guest by default)" },
	{ "info", cmd_info, "print what this host's KVM offers" },
	{ "ctl", cmd_ctl, "control a running VM through its --ctl socket" },
	{ "restore", cmd_restore, "run a VM from a snapshot image" },
	{ "image", cmd_image, "show or verify a snapshot image" },
	{ "fuzz", cmd_fuzz,
	  "snapshot-fuzz a harness guest (or under afl-fuzz)" },
};

void die_msg(const char *fmt, ...)
{
	va_list ap;

	fputs("vmrun: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void usage(FILE *f)
{
	unsigned int i;

	fprintf(f, "usage: vmrun COMMAND [OPTIONS]\n\ncommands:\n");
	for (i = 0; i < ARRAY_SIZE(cmd_table); i++)
		fprintf(f, "  %-10s %s\n", cmd_table[i].name,
			cmd_table[i].summary);
	fprintf(f, "\n'vmrun COMMAND --help' describes a command.\n");
}

int main(int argc, char **argv)
{
	unsigned int i;

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (i = 0; i < ARRAY_SIZE(cmd_table); i++)
		if (!strcmp(argv[1], cmd_table[i].name))
			return cmd_table[i].fn(argc - 1, argv + 1);
	die_msg("unknown command '%s'", argv[1]);
	usage(stderr);
	return EXIT_USAGE;
}
