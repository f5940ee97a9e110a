/* What a resumed run keeps of metrics.jsonl (trainer_metrics_keep): every line of the epochs before
 * the checkpoint's, the probe lines of its epoch up to its batch, nothing after, and never a torn
 * last line. A resume that dropped an earlier probe line would lose a point of the learning curve
 * for good: the probe grid has moved past it. */
#include "harness.h"
#include "train/trainer.h"

#include <string.h>

/* The metrics.jsonl of a run probed at batch 0 of epoch 0 and batches 76 and 300 of epoch 1. */
static const char *const LINES[] = {
    "{\"epoch\": 0, \"batch\": 0, \"train_seconds\": 0.2, \"probe\": {\"linear_nat_acc\": 0.766}}\n",
    "{\"epoch\": 0, \"loss\": 0.9, \"mi\": -0.9, \"lr\": 0.0005, \"seconds\": 285, \"eval\": {}}\n",
    "{\"epoch\": 1, \"batch\": 76, \"train_seconds\": 900.1, \"probe\": {\"attack\": {\"steps\": 10}}}\n",
    "{\"epoch\": 1, \"batch\": 300, \"train_seconds\": 1000.4, \"probe\": {}}\n",
    "{\"epoch\": 1, \"loss\": -1.2, \"mi\": 1.2, \"lr\": 0.0005, \"seconds\": 286, \"eval\": {}}\n",
};
enum { N_LINES = sizeof LINES / sizeof LINES[0] };

static char text[4096];

/* The whole file, and the byte length of its first k lines. */
static size_t build(size_t *prefix) {
  size_t n = 0;
  for (int i = 0; i < N_LINES; i++) {
    prefix[i] = n;
    memcpy(text + n, LINES[i], strlen(LINES[i]));
    n += strlen(LINES[i]);
  }
  prefix[N_LINES] = n;
  return n;
}

static void test_resume_keeps_earlier_epochs_and_probes_up_to_the_batch(void) {
  size_t at[N_LINES + 1];
  const size_t n = build(at);
  CHECK(trainer_metrics_keep(text, n, 0, 0) == at[1]);  /* the start: the probe at batch 0 stays */
  CHECK(trainer_metrics_keep(text, n, 1, 0) == at[2]);  /* after epoch 0 */
  CHECK(trainer_metrics_keep(text, n, 1, 75) == at[2]); /* before the probe at batch 76 */
  CHECK(trainer_metrics_keep(text, n, 1, 76) == at[3]); /* its checkpoint: the probe ran before the batch */
  CHECK(trainer_metrics_keep(text, n, 1, 200) == at[3]); /* Ctrl-C mid-epoch: the probe at 76 is kept */
  CHECK(trainer_metrics_keep(text, n, 1, 467) == at[4]);
  CHECK(trainer_metrics_keep(text, n, 2, 0) == at[5]);  /* everything */
  CHECK(trainer_metrics_keep(text, n, 9, 0) == at[5]);
}

static void test_torn_or_foreign_lines_end_what_is_kept(void) {
  size_t at[N_LINES + 1];
  const size_t n = build(at);
  /* A last line cut short by kill -9 is dropped even when its epoch is kept. */
  CHECK(trainer_metrics_keep(text, n - 1, 9, 0) == at[4]);
  CHECK(trainer_metrics_keep(text, 0, 9, 0) == 0);
  /* A line with no epoch ends the kept part: nothing after it is trusted. */
  const char *odd = "{\"epoch\": 0, \"loss\": 1, \"eval\": {}}\n{\"note\": 1}\n{\"epoch\": 0, \"loss\": 2}\n";
  CHECK(trainer_metrics_keep(odd, strlen(odd), 5, 0) == strlen("{\"epoch\": 0, \"loss\": 1, \"eval\": {}}\n"));
  /* "batches" is not "batch": an epoch line of the resumed epoch goes. */
  const char *eb = "{\"epoch\": 3, \"batches\": 4, \"loss\": 1}\n";
  CHECK(trainer_metrics_keep(eb, strlen(eb), 3, 10) == 0);
}

int main(void) {
  RUN(test_resume_keeps_earlier_epochs_and_probes_up_to_the_batch);
  RUN(test_torn_or_foreign_lines_end_what_is_kept);
  return wt_finish();
}
