// SPDX-License-Identifier: Apache-2.0
/* Unit tests of userspace/lib/log.c: the per-call-site limit of repeated messages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "log.h"

/* Run fn with stderr going to a temporary file; returns what it wrote (caller frees). */
static char *capture_stderr(void (*fn)(void))
{
	FILE *tmp = tmpfile();
	int saved = dup(STDERR_FILENO);
	char *buf = calloc(1, 65536);
	size_t n;

	ASSERT_NOT_NULL(tmp, "tmpfile");
	ASSERT_NOT_NULL(buf, "buffer");
	fflush(stderr);
	dup2(fileno(tmp), STDERR_FILENO);
	fn();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	rewind(tmp);
	n = fread(buf, 1, 65535, tmp);
	buf[n] = '\0';
	fclose(tmp);
	return buf;
}

static unsigned int count_lines(const char *s, const char *needle)
{
	unsigned int n = 0;

	for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static void flood_one_site(void)
{
	for (int i = 0; i < 1000; i++)
		pr_warn_limited("accept failed: try %d", i);
	/* the window is not over: nothing to report yet */
	sm_log_limit_flush();
}

static void test_burst_then_silence(void **state)
{
	char *out;

	(void) state;
	out = capture_stderr(flood_one_site);
	ASSERT_EQ(count_lines(out, "accept failed: try"), SM_LOG_LIMIT_BURST, "lines let through");
	ASSERT_HAS(out, "accept failed: try 0", "the first one");
	ASSERT_EQ(count_lines(out, "suppressed"), 0, "no summary before the window ends");
	free(out);
}

static void two_sites(void)
{
	for (int i = 0; i < 20; i++) {
		pr_warn_limited("site A %d", i);
		pr_warn_limited("site B %d", i);
	}
}

static void test_sites_apart(void **state)
{
	char *out;

	(void) state;
	out = capture_stderr(two_sites);
	ASSERT_EQ(count_lines(out, "site A"), SM_LOG_LIMIT_BURST, "site A");
	ASSERT_EQ(count_lines(out, "site B"), SM_LOG_LIMIT_BURST, "site B has its own limit");
	free(out);
}

static void below_level(void)
{
	sm_log_set_level(SM_LOG_ERROR);
	for (int i = 0; i < 20; i++)
		pr_info_limited("quiet %d", i);
	sm_log_set_level(SM_LOG_INFO);
}

static void test_below_level_not_counted(void **state)
{
	char *out;

	(void) state;
	out = capture_stderr(below_level);
	ASSERT_EQ(count_lines(out, "quiet"), 0, "filtered by level, not by the limit");
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_silence),
		cmocka_unit_test(test_sites_apart),
		cmocka_unit_test(test_below_level_not_counted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
