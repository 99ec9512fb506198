// Type-checked by `npm test` (tsc --noEmit), never run: the declarations narrow what
// they should and refuse what they should. Each @ts-expect-error fails the check if
// the line below it type-checks.
import { connect, type AnyServerFrame, type ServerFrame, type RoomInfo } from '@eventide/client';

declare const frame: ServerFrame;
if (frame.event === 'availabilityUpdated') {
  const version: number = frame.data.version; // narrowed by `event`
  const room: string = frame.room;
  void version, room;
}
if (frame.event === 'joinedRoom') {
  const epoch: string | undefined = frame.data.epoch;
  // @ts-expect-error joinedRoom has no slot
  void frame.data.slot;
  void epoch;
}
if (frame.event === 'pong') {
  // @ts-expect-error pong carries no data
  void frame.data;
}

declare const any: AnyServerFrame;
// An emitted event's data is unknown until the caller says what it is.
// @ts-expect-error unknown
void any.data.text;

const client = connect({ token: 't', url: 'ws://x/ws', connectTimeoutMs: 1, maxBackoffMs: 2 });
// @ts-expect-error the option is gone: the client never gives up on the network
connect({ token: 't', maxFailedHandshakes: 3 });
client.on('availabilityUpdated', (data, f) => {
  const action: 'created' | 'updated' | 'deleted' = data.action;
  const room: string = f.room;
  void action, room;
});
client.on('room', (info: RoomInfo) => {
  // @ts-expect-error not a room state
  if (info.state === 'connected') void info;
});
client.on('resync', async ({ room, version, epoch }) => {
  const e: string | undefined = epoch;
  void room, version, e;
});
client.on('failed', ({ reason }) => {
  // @ts-expect-error the client no longer gives up on failed handshakes
  if (reason === 'handshake_failed') void reason;
});
const info: RoomInfo | undefined = client.room('provider-1');
void info;
