/** Single-quotes `word` as one word for POSIX sh, whatever it contains. */
export function shellQuote(word: string): string {
  return `'${word.replaceAll("'", "'\\''")}'`;
}
