// SPDX-License-Identifier: Apache-2.0
/*
 * Unit tests of userspace/lib/log.c: the per-call-site limit of repeated
 * messages, and the line format with and without the journal on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* JOURNAL_STREAM as systemd would set it for the file stderr is now. */
static void point_journal_at_stderr(void)
{
	struct stat st;
	char val[64];

	ASSERT_EQ(fstat(STDERR_FILENO, &st), 0, "fstat stderr");
	snprintf(val, sizeof(val), "%llu:%llu", (unsigned long long) st.st_dev,
		 (unsigned long long) st.st_ino);
	setenv("JOURNAL_STREAM", val, 1);
}

static void journal_lines(void)
{
	point_journal_at_stderr();
	ASSERT_EQ(sm_log_journal_detect(), true, "JOURNAL_STREAM names stderr");
	sm_log_set_level(SM_LOG_DEBUG);
	pr_err("map %s: cannot pin", "flows");
	pr_warn("catalog reloaded with %d warnings", 2);
	pr_info("listening on %s", "127.0.0.1:15001");
	pr_debug("a debug line");
	pr_err("first line\nsecond line\n");
	sm_log_set_level(SM_LOG_INFO);
	unsetenv("JOURNAL_STREAM");
	sm_log_journal_detect();
}

static void test_journal_priority_prefixes(void **state)
{
	char *out;

	(void) state;
	out = capture_stderr(journal_lines);
	/* systemd's sd-daemon prefixes; the journal stamps the time itself */
	ASSERT_STR_EQ(out,
		      "<3>error: map flows: cannot pin\n"
		      "<4>warn: catalog reloaded with 2 warnings\n"
		      "<6>info: listening on 127.0.0.1:15001\n"
		      "<7>debug: a debug line\n"
		      /* each line of a message is an entry of its own: each gets the prefix */
		      "<3>error: first line\n"
		      "<3>error: second line\n",
		      "journal format");
	free(out);
}

/* The plain format: "2026-01-02T03:04:05.678Z sockmesh LEVEL: message". */
static void assert_plain_line(const char *line, const char *level_msg)
{
	int y, mo, d, h, mi, s, ms, n = 0;

	ASSERT_EQ(
		sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ %n", &y, &mo, &d, &h, &mi, &s, &ms, &n),
		7, "a timestamp first");
	ASSERT_HAS(line + n, "sockmesh ", "the program name");
	ASSERT_HAS(line + n, level_msg, "level and message");
}

static void plain_lines(void)
{
	sm_log_journal_detect();
	pr_err("cannot open %s", "x");
	pr_info("ready");
}

static void test_plain_without_journal(void **state)
{
	char *out;

	(void) state;
	unsetenv("JOURNAL_STREAM");
	out = capture_stderr(plain_lines);
	assert_plain_line(out, "error: cannot open x\n");
	assert_plain_line(strchr(out, '\n') + 1, "info: ready\n");
	ASSERT_EQ(count_lines(out, "<"), 0, "no priority prefix");
	free(out);
}

/* JOURNAL_STREAM values that do not name stderr: another file's, or not DEV:INO at all */
static const char *const not_stderr[] = {
	"1:1", "", "garbage", ":5", "5:", "5:6x", "-1:-1", "5:6:7", "99999999999999999999:1",
};

static bool detect_with(const char *val)
{
	setenv("JOURNAL_STREAM", val, 1);
	return sm_log_journal_detect();
}

static void bad_streams(void)
{
	for (size_t i = 0; i < sizeof(not_stderr) / sizeof(not_stderr[0]); i++)
		if (detect_with(not_stderr[i]))
			fail_msg("JOURNAL_STREAM='%s' taken for stderr", not_stderr[i]);
	pr_info("still plain");
	unsetenv("JOURNAL_STREAM");
	sm_log_journal_detect();
}

static void test_other_stream_stays_plain(void **state)
{
	char *out;

	(void) state;
	/* stderr redirected (2>file) under a unit whose stdout is the journal */
	out = capture_stderr(bad_streams);
	assert_plain_line(out, "info: still plain\n");
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_then_silence),
		cmocka_unit_test(test_sites_apart),
		cmocka_unit_test(test_below_level_not_counted),
		cmocka_unit_test(test_journal_priority_prefixes),
		cmocka_unit_test(test_plain_without_journal),
		cmocka_unit_test(test_other_stream_stays_plain),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
