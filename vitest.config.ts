import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Process-level tests start brokers on real ports; two files at a time fits a 2-core machine.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
