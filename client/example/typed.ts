// Type-checked by `npm test` (tsc --noEmit): the declarations must accept this code
// and type every value in it without `any`.
import { WebSocket } from 'ws';
import { connect, EventideError, type AvailabilityUpdatedData, type Failure } from '@eventide/client';

const client = connect({
  url: 'ws://127.0.0.1:8080/ws',
  token: async () => process.env.EVENTIDE_TOKEN ?? '',
  WebSocket,
  requestTimeoutMs: 5_000,
  pingIntervalMs: 15_000,
  maxBackoffMs: 10_000,
});

const slots = new Map<number, AvailabilityUpdatedData['slot']>();
client.on('availabilityUpdated', (data, frame) => {
  if (data.action === 'deleted') slots.delete(data.slot.id);
  else slots.set(data.slot.id, data.slot);
  console.log(frame.room, data.version, data.slot.status);
});
client.on('resync', async ({ room, version }) => console.log(`reload ${room} at ${version}`));
client.on('room', ({ room, state, reason }) => console.log(room, state, reason ?? ''));
client.on('left', ({ room, reason }) => console.log(`removed from ${room}: ${reason ?? 'left'}`));
client.on('failed', (failure: Failure) => console.error(failure.reason, failure.status ?? '', failure.message));
client.on('state', (state) => console.log('connection', state));
client.on<{ text: string }>('providerMessage', (data, frame) => console.log(frame.room, data.text));

try {
  const joined = await client.join('provider-42', { since: 17 });
  if (joined.recovered === false) console.log('history too short: reload the snapshot');
  console.log('round trip', await client.ping(), 'ms');
} catch (err) {
  if (err instanceof EventideError) console.error(err.code, err.message);
  else throw err;
} finally {
  client.close();
}
