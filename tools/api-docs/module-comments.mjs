// TypeDoc takes a file's first comment as the module's only when it has `@module` or
// `@packageDocumentation`; this repo's module comments (see STYLE.md) end with `@since` instead.
// This plugin marks the first comment of each package source file as the module comment while
// the compiler reads it (on the comment's last line, so no line number moves), so that module
// docs are in the reference and their {@link}s are checked like the others.
import ts from "typescript"

const source = /[\\/]packages[\\/][^\\/]+[\\/]src[\\/].*(?<!\.d)\.ts$/

/** The first comment of a file, when it opens the file (after an optional shebang). */
const moduleComment = /^(#![^\n]*\n)?\s*\/\*\*(?:[^*]|\*(?!\/))*\*\//

export const markModuleComment = (text) => {
  const match = moduleComment.exec(text)
  if (match === null || /@module|@packageDocumentation/.test(match[0])) return text
  const end = match.index + match[0].length - 2
  return `${text.slice(0, end)}@packageDocumentation ${text.slice(end)}`
}

export const load = () => {
  const readFile = ts.sys.readFile
  ts.sys.readFile = (path, encoding) => {
    const text = readFile(path, encoding)
    return text !== undefined && source.test(path) ? markModuleComment(text) : text
  }
}
