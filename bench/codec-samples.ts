/**
 * Sample eBADGE messages as they travel (compact JSON bodies), and how the bus hands them to the codec: as a Buffer
 * that is a view into the incoming AMQP body frame, never a copy.
 *
 * A body frame on the wire is: type (1 byte, 3 = body), channel (uint16), payload size (uint32), the payload, then the
 * frame-end octet 0xCE. So the body the codec sees starts 7 bytes into a larger buffer and is followed by 1 more byte.
 * Decoders must respect the view's bounds; a decoder that reads the whole backing ArrayBuffer would fail validation.
 */

export interface Sample {
  /** Short name used in the tables. */
  readonly name: string;
  /** The JSON text of the body, as the peer sent it. */
  readonly json: string;
}

const REPORT = {
  msg: 'report',
  from: '2015-06-01T10:00:00.000Z',
  to: '2015-06-01T10:45:00.000Z',
  resolution: 900,
  values: {
    'dev1.power': [1.5, 2.25, null],
    'dev1.energy': [0.1, 0.2, 0.3],
    'dev2.power': [3, 4, 5],
    'dev2.energy': [1, 2, 3],
    'meter.power': [10.5, 11.25, 12],
    'meter.energy': [100.125, 100.25, 100.5],
  },
  request_id: '6f1c2d3e-4b5a-4c7d-8e9f-0a1b2c3d4e5f',
};

const ACTIVATE = {
  msg: 'activate',
  id: '2f1e0d9c-8b7a-4695-a4b3-c2d1e0f9a8b7',
  modification_count: 0,
  from: '2015-06-01T18:00:00.000Z',
  to: '2015-06-01T19:30:00.000Z',
  quantity: -1.5,
  device: 'boiler',
  heh_id: 'heh-b827ebea02c1',
};

const GET_REPORT = {
  msg: 'get_report',
  id: '9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d',
  from: '2015-06-01T10:00:00.000Z',
  to: '2015-06-01T10:45:00.000Z',
  resolution: 900,
  signals: ['dev1.power', 'dev1.energy', 'dev2.power', 'dev2.energy', 'meter.power', 'meter.energy'],
};

const RESPONSE = {
  msg: 'response',
  msg_id: '2f1e0d9c-8b7a-4695-a4b3-c2d1e0f9a8b7',
  response_code: 200,
  response_subcode: 0,
  response_desc: 'OK',
};

/** The four messages of the issue, in the form JSON.stringify gives (what our JsonWriter produces byte for byte). */
export const SAMPLES: readonly Sample[] = [
  { name: 'report', json: JSON.stringify(REPORT) },
  { name: 'activate', json: JSON.stringify(ACTIVATE) },
  { name: 'get_report', json: JSON.stringify(GET_REPORT) },
  { name: 'response', json: JSON.stringify(RESPONSE) },
];

export const FRAME_HEADER = 7;
export const FRAME_END = 0xce;

/**
 * `payload` as the bus sees a body: a subarray of a whole AMQP body frame (header before, frame-end after). The frame
 * is allocated with Buffer.alloc, not from the shared pool, like a frame cut out of a socket read.
 */
export function framedBytes(payload: Uint8Array, channel = 1): Buffer {
  const size = payload.length;
  const frame = Buffer.alloc(FRAME_HEADER + size + 1);
  frame.writeUInt8(3, 0);
  frame.writeUInt16BE(channel, 1);
  frame.writeUInt32BE(size, 3);
  frame.set(payload, FRAME_HEADER);
  frame.writeUInt8(FRAME_END, FRAME_HEADER + size);
  return frame.subarray(FRAME_HEADER, FRAME_HEADER + size);
}

/** The UTF-8 body of `json`, framed as by framedBytes. */
export function framedBody(json: string, channel = 1): Buffer {
  return framedBytes(Buffer.from(json, 'utf8'), channel);
}
