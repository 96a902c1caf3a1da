/* Waveform peaks for drawing, shared by the annotate and retarget pages.
 * Loaded as a classic script, it defines the global Waveform.
 */
"use strict";

const Waveform = (function waveform() {
  // The largest absolute sample of channel 0 in each of `width` equal slices of `buffer` (an AudioBuffer).
  function peaks(buffer, width) {
    const data = buffer.getChannelData(0), out = new Float32Array(width);
    const per = Math.max(1, Math.floor(data.length / width));
    for (let x = 0; x < width; x++) {
      let peak = 0;
      for (let i = x * per, end = Math.min(data.length, (x + 1) * per); i < end; i++) {
        const v = Math.abs(data[i]); if (v > peak) peak = v;
      }
      out[x] = peak;
    }
    return out;
  }

  return { peaks };
})();
