import { TestBus } from '../src/engines/bus/index.js';
import { MemoryEngine } from '../src/engines/memory/index.js';
import { RedisEngine } from '../src/engines/redis/index.js';
import { contract } from './engine-contract.js';
import { RedisProcess } from './redis-helpers.js';

contract('memory', async () => {
  const engine = new MemoryEngine();
  return { engine, cleanup: () => engine.close() };
});

contract('test bus (one node of two)', async () => {
  const bus = new TestBus();
  const engine = bus.node('a');
  bus.node('b');
  await bus.start();
  return { engine, cleanup: () => bus.close() };
});

let redis: RedisProcess | undefined;
contract('redis', async () => {
  redis = await RedisProcess.start();
  const engine = new RedisEngine({ url: redis.url });
  return {
    engine,
    cleanup: async () => {
      await engine.close();
      await redis!.stop();
    },
  };
});
