package genrec.testing;

import java.io.File;
import java.io.IOException;
import java.util.Iterator;

import io.delta.storage.LocalLogStore;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.Path;

/**
 * Test-only Delta LogStore (tests/test_faults.py): while the file named by the environment variable
 * GENREC_FAIL_COMMIT exists, writing a commit file (_delta_log/NNN.json) fails. The data files of the
 * transaction are already written then, exactly as when a driver dies between the Spark write and
 * the Delta commit.
 */
public class FailingLogStore extends LocalLogStore {
    public FailingLogStore(Configuration hadoopConf) {
        super(hadoopConf);
    }

    @Override
    public void write(Path path, Iterator<String> actions, Boolean overwrite, Configuration hadoopConf)
            throws IOException {
        String marker = System.getenv("GENREC_FAIL_COMMIT");
        if (marker != null && new File(marker).exists() && path.getName().matches("\\d+\\.json")) {
            throw new IOException("injected: driver lost before the Delta commit of " + path.getName());
        }
        super.write(path, actions, overwrite, hadoopConf);
    }
}
