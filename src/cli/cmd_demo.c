/* wcmi demo: the README's main job, the quick Fashion-MNIST table of `wcmi reproduce` under
 * runs/demo (the same stages and options, not a second pipeline). */
int reproduce_main(const char *cmd, int argc, char **argv);
int wcmi_cmd_demo(int argc, char **argv);

int wcmi_cmd_demo(int argc, char **argv) { return reproduce_main("demo", argc, argv); }
