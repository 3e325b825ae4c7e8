/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test PKI fixture shared by the TLS and SVID unit tests: scripts/test-pki.sh
 * into a fresh temporary directory, removed afterwards. Tests run from the
 * repository root (tests/run-tests.sh cds there); SM_TEST_PKI overrides the
 * script's path. Without the openssl CLI the tests that need it skip.
 */
#ifndef SOCKMESH_TEST_PKI_H
#define SOCKMESH_TEST_PKI_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char pki[64];
static bool openssl_missing;

/* Make the PKI for trust domain td under /tmp/sockmesh-<tag>-XXXXXX. 0 or -1. */
static int pki_make(const char *tag, const char *td)
{
	const char *script = getenv("SM_TEST_PKI");
	char cmd[512];

	if (!script)
		script = "scripts/test-pki.sh";
	if (system("command -v openssl >/dev/null 2>&1") != 0) {
		openssl_missing = true;
		return 0;
	}
	if (access(script, X_OK) != 0) {
		fprintf(stderr,
			"%s: not found or not executable (run the tests from the repo root "
			"or set SM_TEST_PKI)\n",
			script);
		return -1;
	}
	snprintf(pki, sizeof(pki), "/tmp/sockmesh-%s-XXXXXX", tag);
	if (!mkdtemp(pki)) {
		perror("mkdtemp");
		pki[0] = '\0';
		return -1;
	}
	snprintf(cmd, sizeof(cmd), "'%s' '%s' '%s'", script, pki, td);
	if (system(cmd) != 0) {
		fprintf(stderr, "%s failed\n", cmd);
		return -1;
	}
	return 0;
}

/* Remove what pki_make() made (only ever a /tmp/sockmesh-* directory). */
static int pki_remove(void)
{
	char cmd[128];

	if (pki[0] && strncmp(pki, "/tmp/sockmesh-", 14) == 0) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pki);
		if (system(cmd) != 0)
			fprintf(stderr, "cannot remove %s\n", pki);
	}
	return 0;
}

/* Skip the calling test when the PKI could not be made for lack of openssl. */
static void need_pki(void)
{
	if (openssl_missing) {
		print_message("openssl CLI not installed (scripts/install-deps.sh): skipped\n");
		skip();
	}
}

#endif /* SOCKMESH_TEST_PKI_H */
