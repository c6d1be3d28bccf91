/**
 * A tiny Node program that sits between the test process and an emulator, so that the emulator dies with the test
 * process even when that process is SIGKILLed and runs no exit hooks.
 *
 * Usage: `node supervisor.ts <graceMillis> <command> [args...]`. The parent keeps this process's stdin open and never
 * writes to it; the kernel closes the pipe when the parent dies, however it dies. Polling the parent pid covers the
 * case where stdin was inherited or closed by someone else. On any of those, and on SIGTERM/SIGINT/SIGHUP, the
 * emulator gets SIGTERM and, after the grace period, SIGKILL (kinesis-mock can ignore SIGTERM). The supervisor exits
 * once the emulator has exited, with its exit code. The emulator's pid is written to fd 3 so the parent can check it.
 *
 * @internal
 */
import { spawn } from "node:child_process"
import { writeSync } from "node:fs"
import { constants } from "node:os"

const [graceArg = "1000", command = "", ...args] = process.argv.slice(2)
const graceMillis = Number(graceArg)
const parentPid = process.ppid

const child = spawn(command, args, { stdio: ["ignore", "inherit", "inherit"] })

let stopping = false
const stop = () => {
  if (stopping) return
  stopping = true
  child.kill("SIGTERM")
  setTimeout(() => child.kill("SIGKILL"), graceMillis)
}

child.on("spawn", () => {
  try {
    writeSync(3, `${child.pid}\n`)
  } catch {
    // fd 3 is only there when started by the testing package; the emulator runs anyway.
  }
})
child.on("error", (error) => {
  process.stderr.write(`supervisor: cannot run ${command}: ${error.message}\n`)
  process.exit(127)
})
child.on("exit", (code, signal) => {
  process.exit(code ?? (signal === null ? 1 : 128 + constants.signals[signal]))
})

process.on("SIGTERM", stop)
process.on("SIGINT", stop)
process.on("SIGHUP", stop)
process.stdin.on("end", stop)
process.stdin.on("error", stop)
process.stdin.resume()

setInterval(() => {
  if (process.ppid !== parentPid) return stop()
  try {
    process.kill(parentPid, 0)
  } catch {
    stop()
  }
}, 250)
