/* wcmi eval: natural accuracy and adversarial accuracy per attack, with the protocol stated. */
#include "cli/task_cli.h"


int wcmi_cmd_eval(int argc, char **argv) {
  task_cli tc;
  int rc = task_cli_parse(&tc, "eval",
                          WCMI_GROUP_DATA | WCMI_GROUP_PROFILE | WCMI_GROUP_ATTACK | WCMI_GROUP_EVAL | WCMI_GROUP_RUN |
                              WCMI_GROUP_PROGRESS | WCMI_GROUP_OUT | WCMI_GROUP_MODEL | WCMI_GROUP_EVAL_ATTACK,
                          "--model FILE [--attack pgd|apgd|strong] [attack options] [--out DIR]",
                          "Natural and adversarial accuracy of a classifier model on the test split (BN in eval mode). Every "
                          "attack maximizes the cross-entropy within the eps-ball (--norm, --eps, --attack-steps, --attack-lr, "
                          "--restarts, --random-start, --use-best; defaults: the paper's per-dataset protocol). A sample "
                          "counts as robust only if it is classified correctly clean and attacked; with several attacks, "
                          "only if it survives all of them. Prints JSON (nat_acc, each attack's adv_acc and protocol, "
                          "min_adv_acc, worst_case_adv_acc) on stdout; --out DIR also writes DIR/eval.json. --data "
                          "defaults to the model's dataset; --test-subset and --eval-batches shorten the evaluation.",
                          NULL, argc, argv);
  if (rc) return rc < 0 ? 0 : rc;
  if (!tc.cfg.model) {
    fprintf(stderr, "wcmi eval: --model FILE is required\n");
    task_cli_finish(&tc, "eval", WCMI_OK, NULL);
    return 2;
  }
  char *summary = NULL;
  rc = wcmi_task_eval(&tc.ctx, &tc.cfg, &summary);
  return task_cli_finish(&tc, "eval", rc, summary);
}
