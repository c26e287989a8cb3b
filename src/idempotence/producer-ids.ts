/**
 * Producer ids, unique across restarts: the next id to hand out is kept in
 * `meta/producer-ids.json` (`{"version":1,"next":N}`, written atomically and synced before the id
 * is returned, so a crash can skip ids but never repeat one). Ids met in the logs while producer
 * state is rebuilt also push `next` above them, in case the file was lost.
 *
 * @example
 *   const ids = await ProducerIdAllocator.open(fs, dataDir);
 *   const id = await ids.allocate(); // 0, then 1, ...
 */
import { joinPath, writeFileAtomic, type FileSystem } from "../runtime/fs.ts";

interface IdFile {
  version: 1;
  next: number;
}

export class ProducerIdAllocator {
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly fs: FileSystem,
    private readonly file: string,
    private next: number,
  ) {}

  static async open(fs: FileSystem, dataDir: string): Promise<ProducerIdAllocator> {
    const dir = joinPath(dataDir, "meta");
    // A cluster peer keeps its metadata elsewhere (cluster/meta/), so nothing else makes meta/.
    await fs.mkdirp(dir);
    const file = joinPath(dir, "producer-ids.json");
    const bytes = await fs.readFile(file);
    let next = 0;
    if (bytes) {
      const parsed = JSON.parse(new TextDecoder().decode(bytes)) as IdFile;
      if (parsed.version !== 1 || !Number.isSafeInteger(parsed.next) || parsed.next < 0) {
        throw new Error(`producer id file ${file} is damaged; restore it or remove it (ids are then derived from the logs)`);
      }
      next = parsed.next;
    }
    return new ProducerIdAllocator(fs, file, next);
  }

  /** True for ids this broker has handed out (or met in a log). */
  issued(producerId: number): boolean {
    return producerId < this.next;
  }

  /** An id met in a log: never hand it out again. */
  observe(producerId: number): void {
    if (producerId >= this.next) this.next = producerId + 1;
  }

  allocate(): Promise<number> {
    const run = this.chain.then(async () => {
      const id = this.next;
      const body: IdFile = { version: 1, next: id + 1 };
      await writeFileAtomic(this.fs, this.file, new TextEncoder().encode(`${JSON.stringify(body)}\n`));
      this.next = Math.max(this.next, id + 1);
      return id;
    });
    this.chain = run.catch(() => {});
    return run;
  }
}
