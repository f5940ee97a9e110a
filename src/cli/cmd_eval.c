/* wcmi eval: natural accuracy and adversarial accuracy per attack, with the protocol stated. */
#include "cli/model_data.h"
#include "cli/task_cli.h"

#include <string.h>

int wcmi_cmd_eval(int argc, char **argv) {
  task_cli tc;
  const char *attack = "pgd", *model = NULL;
  wcmi_opt extra[] = {
      {"--model", WCMI_OPT_STR, &model, "FILE", "model with a classifier head (train-classifier / train-model result)", 0},
      {"--attack", WCMI_OPT_STR, &attack, "A",
       "pgd (default: the configured PGD), apgd (APGD-CE, same eps and budget), strong (pgd + random-start PGD with "
       "restarts (default 5) + APGD-CE, worst case per sample)",
       0},
      {0}};
  model_data_argv md;
  int rc = model_data_argv_init(&md, "eval", argc, argv);
  if (rc) return rc;
  rc = task_cli_parse(&tc, "eval", "--model FILE [--attack pgd|apgd|strong] [attack options] [--out DIR]",
                      "Natural and adversarial accuracy of a classifier model on the test split (BN in eval mode). Every "
                      "attack maximizes the cross-entropy within the eps-ball (--norm, --eps, --attack-steps, --attack-lr, "
                      "--restarts, --random-start, --use-best; defaults: the paper's per-dataset protocol). A sample "
                      "counts as robust only if it is classified correctly clean and attacked; with several attacks, "
                      "only if it survives all of them. Prints JSON (nat_acc, each attack's adv_acc and protocol, "
                      "min_adv_acc, worst_case_adv_acc) on stdout; --out DIR also writes DIR/eval.json. --data "
                      "defaults to the model's dataset; --test-subset and --eval-batches shorten the evaluation.",
                      extra, md.argc, md.argv);
  if (rc) return rc < 0 ? 0 : rc;
  if (!strcmp(attack, "pgd")) tc.cfg.eval_attack = WCMI_EVAL_PGD;
  else if (!strcmp(attack, "apgd")) tc.cfg.eval_attack = WCMI_EVAL_APGD;
  else if (!strcmp(attack, "strong")) tc.cfg.eval_attack = WCMI_EVAL_STRONG;
  else {
    fprintf(stderr, "wcmi eval: --attack must be pgd, apgd or strong\n");
    task_cli_finish(&tc, "eval", WCMI_OK, NULL);
    return 2;
  }
  if (!model) {
    fprintf(stderr, "wcmi eval: --model FILE is required\n");
    task_cli_finish(&tc, "eval", WCMI_OK, NULL);
    return 2;
  }
  tc.cfg.model = model;
  char *summary = NULL;
  rc = wcmi_task_eval(&tc.ctx, &tc.cfg, &summary);
  return task_cli_finish(&tc, "eval", rc, summary);
}
