/* SPDX-License-Identifier: MIT */
/*
 * main() for the fuzz harnesses when libFuzzer is not used:
 *   fuzz_X FILE...      runs each file once (crash reproducers, seeds)
 *   fuzz_X --smoke N    runs N inputs: random bytes, and mutations of the
 *                       seed files in FUZZ_SEEDS (a directory), if set
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/fuzz/fuzz.h"

#define FUZZ_MAX_INPUT 65536
#define MAX_SEEDS 64

static uint64_t rng = 0x2545f4914f6cdd1dULL;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static size_t load(const char *path, uint8_t *buf)
{
	FILE *f = fopen(path, "rb");
	size_t n;

	if (!f) {
		perror(path);
		exit(2);
	}
	n = fread(buf, 1, FUZZ_MAX_INPUT, f);
	fclose(f);
	return n;
}

int main(int argc, char **argv)
{
	static uint8_t seeds[MAX_SEEDS][FUZZ_MAX_INPUT], buf[FUZZ_MAX_INPUT];
	size_t seed_len[MAX_SEEDS];
	unsigned int nr_seeds = 0;
	unsigned long i, n;
	const char *dir;
	int a;

	if (argc == 3 && !strcmp(argv[1], "--smoke")) {
		n = strtoul(argv[2], NULL, 10);
		dir = getenv("FUZZ_SEEDS");
		if (dir) {
			DIR *d = opendir(dir);
			struct dirent *e;
			char path[4096];

			while (d && (e = readdir(d)) && nr_seeds < MAX_SEEDS) {
				if (e->d_name[0] == '.')
					continue;
				snprintf(path, sizeof(path), "%s/%s", dir,
					 e->d_name);
				seed_len[nr_seeds] =
					load(path, seeds[nr_seeds]);
				nr_seeds++;
			}
			if (d)
				closedir(d);
		}
		for (i = 0; i < n; i++) {
			size_t len, k, flips;

			if (nr_seeds && (i & 1)) {
				unsigned int s =
					(unsigned int)(next() % nr_seeds);

				len = seed_len[s];
				memcpy(buf, seeds[s], len);
				flips = 1 + next() % 16;
				for (k = 0; k < flips && len; k++)
					buf[next() % len] = (uint8_t)next();
				if (next() % 4 == 0 && len)
					len = next() % len;
			} else {
				len = next() % 4096;
				for (k = 0; k < len; k++)
					buf[k] = (uint8_t)next();
			}
			LLVMFuzzerTestOneInput(buf, len);
		}
		printf("%s: %lu inputs (%u seeds), no crash\n", argv[0], n,
		       nr_seeds);
		return 0;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE... | --smoke N\n", argv[0]);
		return 2;
	}
	for (a = 1; a < argc; a++) {
		size_t len = load(argv[a], buf);

		LLVMFuzzerTestOneInput(buf, len);
	}
	return 0;
}
