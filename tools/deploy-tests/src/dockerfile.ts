// A small Dockerfile reader: instructions (continuations joined, comments dropped)
// grouped into build stages. Enough to check how the images are put together.

export interface Instruction {
  keyword: string;
  args: string;
}

export interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

export function parseDockerfile(text: string): { args: Instruction[]; stages: Stage[] } {
  const instructions: Instruction[] = [];
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (pending === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.startsWith('#')) continue; // comment lines inside a continuation
    pending = pending ? `${pending} ${line}` : line;
    if (pending.endsWith('\\')) {
      pending = pending.slice(0, -1).trimEnd();
      continue;
    }
    const space = pending.search(/\s/);
    instructions.push({ keyword: pending.slice(0, space).toUpperCase(), args: pending.slice(space + 1).trim() });
    pending = '';
  }
  const args: Instruction[] = [];
  const stages: Stage[] = [];
  for (const instruction of instructions) {
    if (instruction.keyword === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(instruction.args);
      if (!m) throw new Error(`unreadable FROM: ${instruction.args}`);
      stages.push({ from: m[1]!, ...(m[2] ? { name: m[2] } : {}), instructions: [] });
    } else if (stages.length === 0) {
      args.push(instruction);
    } else {
      stages[stages.length - 1]!.instructions.push(instruction);
    }
  }
  return { args, stages };
}

/** The default of a global `ARG name=default`, for resolving `FROM ${name}`. */
export function argDefault(args: Instruction[], name: string): string | undefined {
  const arg = args.find((a) => a.keyword === 'ARG' && a.args.startsWith(`${name}=`));
  return arg?.args.slice(name.length + 1);
}
