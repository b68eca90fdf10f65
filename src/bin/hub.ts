/** The entry of dist/hub.js, the one file a hub integrator copies to the Pi. */
import { runHubProcess } from '../device/main.js';

runHubProcess();
