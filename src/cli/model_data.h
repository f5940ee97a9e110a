/* Commands that read a model file (--model FILE) take the dataset from the file when --data is not
 * given, so the per-dataset defaults (eps, steps, step) match the data the model was trained on. */
#ifndef WCMI_CLI_MODEL_DATA_H
#define WCMI_CLI_MODEL_DATA_H

#define MODEL_DATA_MAX_ARGS 256

typedef struct model_data_argv {
  int argc;
  char *argv[MODEL_DATA_MAX_ARGS + 3];
  char dataset[32];
} model_data_argv;

/* Copies argv into out, appending "--data NAME" when argv names --model FILE, gives no --data and
 * no --resume, and FILE's metadata names a dataset. An unreadable FILE adds nothing: the command
 * then reports the file's problem itself. Returns 2 (usage error, message printed) if argv is too
 * long, else 0. */
int model_data_argv_init(model_data_argv *out, const char *cmd, int argc, char **argv);

#endif
