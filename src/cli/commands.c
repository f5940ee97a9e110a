/* The command table. One line per subcommand; each lives in its own cmd_*.c file. */
#include "cli/cli.h"

int wcmi_cmd_version(int argc, char **argv);
int wcmi_cmd_info(int argc, char **argv);
int wcmi_cmd_data(int argc, char **argv);
int wcmi_cmd_train_encoder(int argc, char **argv);
int wcmi_cmd_train_classifier(int argc, char **argv);
int wcmi_cmd_train_model(int argc, char **argv);
int wcmi_cmd_eval(int argc, char **argv);
int wcmi_cmd_encode(int argc, char **argv);
int wcmi_cmd_estimate_mi(int argc, char **argv);
int wcmi_cmd_vulnerability(int argc, char **argv);
int wcmi_cmd_saliency(int argc, char **argv);
int wcmi_cmd_report(int argc, char **argv);
int wcmi_cmd_demo(int argc, char **argv);
int wcmi_cmd_reproduce(int argc, char **argv);

const wcmi_cli_command wcmi_cli_commands[] = {
    {"version", "print version and the linked BLAS", wcmi_cmd_version},
    {"info", "describe a .safetensors file (architecture, tensors, metadata) as JSON", wcmi_cmd_info},
    {"data", "dataset info (JSON) and sample grids (PNG)", wcmi_cmd_data},
    {"train-encoder", "learn a representation: DIM (normal MI) or worst-case MI", wcmi_cmd_train_encoder},
    {"train-classifier", "train a linear or MLP head on a frozen encoder (standard or robust)", wcmi_cmd_train_classifier},
    {"train-model", "train Baseline-H (encoder + head) end to end (standard or robust)", wcmi_cmd_train_model},
    {"eval", "natural and adversarial accuracy (pgd, apgd or strong), protocol stated", wcmi_cmd_eval},
    {"encode", "representations of a dataset as a .npy file (plus labels)", wcmi_cmd_encode},
    {"estimate-mi", "MI of a frozen representation, normal or worst case (fresh critic, Algorithm 2)", wcmi_cmd_estimate_mi},
    {"vulnerability", "normal and worst-case MI, representation vulnerability and the Fano bound", wcmi_cmd_vulnerability},
    {"saliency", "saliency maps: input gradients of the MI loss, cross-entropy or a feature (PNG grid)", wcmi_cmd_saliency},
    {"report", "one self-contained HTML report over run directories (curves, accuracies, RV, Fano, saliency)", wcmi_cmd_report},
    {"reproduce", "one paper table in one resumable command, beside the published numbers", wcmi_cmd_reproduce},
    {"demo", "the main job: the quick Fashion-MNIST table of reproduce", wcmi_cmd_demo},
    {0, 0, 0},
};
