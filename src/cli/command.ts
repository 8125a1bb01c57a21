/** One `chorus <command>`: what `chorus --help` lists and what runs it. */
export interface Command {
  /** One line for `chorus --help`. */
  summary: string;
  /**
   * Runs the command with the arguments after its name (`--help` included: each command
   * prints its own usage). Resolves when the command's work is started or done; the command
   * sets the exit code or exits itself on failure.
   */
  run(argv: readonly string[]): Promise<void>;
}
