/** CLI output made comparable with a snapshot: what moves with the wall clock or the machine replaced. */

/** Ages and countdowns, pids and the local UTC offset replaced; runs of spaces (column widths that depend on them) made two. */
export function normaliseCliText(text: string): string {
  return text
    .replace(/\b(?:\d+d \d+h|\d+h \d+m|\d+m \d+s|\d+s) ago\b|\bjust now\b/g, '<AGO>')
    .replace(/\bin (?:\d+d \d+h|\d+h \d+m|\d+m \d+s|\d+s)\b/g, '<IN>')
    .replace(/pid \d+/g, 'pid <PID>')
    .replace(/UTC[+-]\d\d:\d\d/g, 'UTC<OFFSET>')
    .replace(/ {2,}/g, '  ')
    .trimEnd();
}
